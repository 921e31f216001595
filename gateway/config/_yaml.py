"""Read a YAML file into plain data while remembering the line of every key, so that any error
found later (by pydantic or by cross-checks) can name the file, the line and the field path.

``${NAME}`` and ``${NAME:-default}`` in string scalars are replaced from the environment; a
missing variable is an error naming the field, never the value (secrets come this way).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import ConfigError, ConfigProblem

Loc = tuple[str | int, ...]
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class YamlDocument:
    """Plain data of a YAML file plus the 1-based line of every mapping key and sequence item."""

    file: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    env_fields: set[Loc] = field(default_factory=set)  # fields whose value came from the environment

    def line_of(self, loc: Loc) -> int | None:
        """The line of the deepest known prefix of ``loc``."""
        for n in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:n]))
            if line is not None:
                return line
        return None

    def problem(self, loc: Loc, message: str) -> ConfigProblem:
        return ConfigProblem(self.file, self.line_of(loc), format_loc(loc), message)


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(path: str | Path, environ: Mapping[str, str] | None = None) -> YamlDocument:
    """Parse ``path``; raise :class:`ConfigError` with file and line for syntax and env problems."""
    env = os.environ if environ is None else environ
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(name, None, "", f"cannot read the file: {exc.strerror}")]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([ConfigProblem(name, line, "", f"YAML syntax: {exc.problem}")]) from None
    doc = YamlDocument(name, None)
    problems: list[ConfigProblem] = []
    doc.data = _convert(root, (), doc, env, problems) if root is not None else {}
    if problems:
        raise ConfigError(problems)
    return doc


def _convert(node: yaml.Node, loc: Loc, doc: YamlDocument, env: Mapping[str, str], problems: list) -> Any:
    doc.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            doc.lines[loc + (key,)] = key_node.start_mark.line + 1
            if key in out:
                problems.append(doc.problem(loc + (key,), f"duplicate key {key!r}"))
            out[key] = _convert(value_node, loc + (key,), doc, env, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, loc + (i,), doc, env, problems) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")  # one per scalar: a shared loader would keep every node alive
    value = loader.construct_object(node, deep=True)
    loader.dispose()
    if isinstance(value, str) and "${" in value:
        return _substitute(value, loc, doc, env, problems)
    return value


def _substitute(value: str, loc: Loc, doc: YamlDocument, env: Mapping[str, str], problems: list) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(doc.problem(loc, f"environment variable {name} is not set"))
        return ""

    doc.env_fields.add(loc)
    return ENV_REFERENCE.sub(replace, value)
