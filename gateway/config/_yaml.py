"""Read a YAML file into plain data while remembering the line of every key, so that any error
found later (by pydantic or by cross-checks) can name the file, the line and the field path.

``${NAME}`` and ``${NAME:-default}`` in string scalars are replaced from the environment; a
missing variable is an error naming the field, never the value (secrets come this way).

No input gets past this module as anything but a :class:`ConfigError` with file and line: the
file must be UTF-8 (a UTF-8 byte-order mark is allowed) and at most :data:`MAX_BYTES`, nest at most
:data:`MAX_DEPTH` levels, use only the plain YAML types (no ``!custom`` or ``!!python`` tags), and
its aliases may add at most :data:`ALIAS_BUDGET` nodes (a "billion laughs" file is refused in
milliseconds instead of eating the memory).  Merge keys (``<<: *defaults``) work.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from gateway.config._compose import TooDeep, compose
from gateway.errors import ConfigError, ConfigProblem

Loc = tuple[str | int, ...]
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

#: a site file is a few kB; 1,000 templated devices are about 100 kB
MAX_BYTES = 4 * 1024 * 1024
#: the deepest site-file value is about 6 levels down (analytics.emissions.certificates_mwh.b.month)
MAX_DEPTH = 40
#: nodes that aliases may add beyond the document's own
ALIAS_BUDGET = 100_000

_STD = "tag:yaml.org,2002:"
SCALAR_TAGS = frozenset(_STD + t for t in ("null", "bool", "int", "float", "str", "timestamp"))
MERGE_TAG = _STD + "merge"
COLLECTION_TAGS = frozenset({_STD + "map", _STD + "seq"})
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONSTRUCTOR = SafeConstructor()  # only its stateless scalar constructors are called


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


def load_yaml(path: str | Path, environ: Mapping[str, str] | None = None, *, substitute: bool = True) -> YamlDocument:
    """Parse ``path``; raise :class:`ConfigError` with file and line for every problem found.
    ``substitute=False`` leaves ``${...}`` alone (a profile file takes nothing from the environment)."""
    env = os.environ if environ is None else environ
    name = str(path)
    text = _read_text(name)
    try:
        root, nodes = compose(text, MAX_DEPTH)
    except TooDeep as exc:
        raise _error(name, exc.line, f"nested deeper than {MAX_DEPTH} levels") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = ", ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise _error(name, line, f"YAML syntax: {what}") from None
    except yaml.YAMLError as exc:  # the reader and scanner's own errors carry no mark
        raise _error(name, None, f"YAML syntax: {exc}") from None
    doc = YamlDocument(name, None)
    walk = _Walk(doc, env, nodes + ALIAS_BUDGET, substitute)
    doc.data = walk.convert(root, ()) if root is not None else {}
    if walk.problems:
        raise ConfigError(walk.problems)
    return doc


def _error(file: str, line: int | None, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(file, line, "", message)])


def _read_text(name: str) -> str:
    try:
        with open(name, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _error(name, None, f"cannot read the file: {reason}") from None
    if len(data) > MAX_BYTES:
        raise _error(name, None, f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _error(name, 1, "the file is UTF-16 or UTF-32: save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _error(
            name, line, f"not UTF-8: byte 0x{data[exc.start]:02X} at column {column} (save the file as UTF-8)"
        ) from None
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise _error(name, line, f"character U+{ord(bad.group()):04X} is not allowed in a YAML file")
    return text


class _Walk:
    """Nodes → plain data, lines recorded; aliases expanded within a node budget, tags checked."""

    def __init__(self, doc: YamlDocument, env: Mapping[str, str], budget: int, substitute: bool) -> None:
        self.doc = doc
        self.env = env
        self.substitute = substitute
        self.budget = budget
        self.visited = 0
        self.depth = 0
        self.open: set[int] = set()  # ids of the collections being converted (a recursive alias)
        self.problems: list[ConfigProblem] = []

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.append(self.doc.problem(loc, message))

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        self.doc.lines.setdefault(loc, node.start_mark.line + 1)
        self.visited += 1
        if self.visited > self.budget:
            self.problems.append(self.doc.problem(loc, f"aliases expand the file beyond {self.budget} values"))
            raise ConfigError(self.problems)
        if self.depth > MAX_DEPTH:  # the composer allows MAX_DEPTH collections, then a scalar
            self.problem(loc, f"nested deeper than {MAX_DEPTH} levels (through aliases)")
            return None
        self.depth += 1
        try:
            return self._convert(node, loc)
        finally:
            self.depth -= 1

    def _convert(self, node: yaml.Node, loc: Loc) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, loc)
        if node.tag not in COLLECTION_TAGS:
            self.problem(loc, f"unsupported tag {_tag(node.tag)} (plain mappings and lists only)")
            return None
        if id(node) in self.open:
            self.problem(loc, "an alias refers to a node that contains it")
            return None
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            return [self.convert(item, loc + (i,)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[tuple[yaml.Node, Loc]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line = key_node.start_mark.line + 1
                self.problems.append(ConfigProblem(self.doc.file, line, format_loc(loc), "a key must be plain text"))
                continue
            if key_node.tag == MERGE_TAG:
                merges.append((value_node, loc))
                continue
            key = key_node.value
            self.doc.lines[loc + (key,)] = key_node.start_mark.line + 1
            if key in out:
                self.problem(loc + (key,), f"duplicate key {key!r}")
            out[key] = self.convert(value_node, loc + (key,))
        for value_node, at in merges:
            self._merge(out, value_node, at)
        return out

    def _merge(self, out: dict[str, Any], node: yaml.Node, loc: Loc) -> None:
        """``<<: *a`` or ``<<: [*a, *b]``: keys given in the mapping win, then the earlier source."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for src in sources:
            if not isinstance(src, yaml.MappingNode):
                self.problem(loc, "<< takes a mapping or a list of mappings")
                continue
            lines, self.doc.lines = self.doc.lines, {}
            try:
                merged = self.convert(src, loc)
            finally:
                sub_lines, self.doc.lines = self.doc.lines, lines
            taken = {key for key in merged if key not in out} if isinstance(merged, dict) else set()
            for key in taken:
                out[key] = merged[key]
            n = len(loc)
            for sub, line in sub_lines.items():  # an error inside a merged value points at its source
                if len(sub) > n and sub[n] in taken:
                    self.doc.lines.setdefault(sub, line)

    def _scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        if node.tag not in SCALAR_TAGS:
            self.problem(loc, f"unsupported tag {_tag(node.tag)} (plain text, numbers, true/false, null only)")
            return None
        try:
            value = SafeConstructor.yaml_constructors[node.tag](_CONSTRUCTOR, node)
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError, yaml.YAMLError):
            self.problem(loc, f"{_clip(node.value)!r} is not a valid {node.tag.removeprefix(_STD)}")
            return None
        if isinstance(value, str):
            if self.substitute and "${" in value:
                value = self._substitute(value, loc)
            if CONTROL.search(value):
                self.problem(loc, "control characters are not allowed in a value")
                return None
        return value

    def _substitute(self, value: str, loc: Loc) -> str:
        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.problem(loc, f"environment variable {name} is not set")
            return ""

        self.doc.env_fields.add(loc)
        return ENV_REFERENCE.sub(replace, value)


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_STD) if tag.startswith(_STD) else tag
