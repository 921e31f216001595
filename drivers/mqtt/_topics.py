"""Topic templates: ``pedf/{building}/{device}/telemetry`` is both a subscription and a tag extractor.

A placeholder fills one whole topic level and subscribes as ``+``; ``+`` and a final ``#`` may be
written as they are (MQTT 3.1.1 §4.7 and MQTT 5.0 §4.7, "Topic Names and Topic Filters": a wildcard
takes a whole level, ``#`` only last).  Matching a received topic returns the placeholder values,
which become tags of the sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.errors import TopicTemplateError

_PLACEHOLDER = re.compile(r"^\{([a-z][a-z0-9_]*)\}$")


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    """A parsed template: one entry per level, a tag name, ``+``, ``#`` or a literal."""

    text: str
    levels: tuple[tuple[str, str], ...]  # (kind, value): kind in "lit", "tag", "+", "#"

    @property
    def filter(self) -> str:
        """The MQTT topic filter to subscribe to."""
        return "/".join(v if k == "lit" else ("+" if k in ("tag", "+") else "#") for k, v in self.levels)

    @property
    def tag_names(self) -> tuple[str, ...]:
        return tuple(v for k, v in self.levels if k == "tag")

    def match(self, topic: str) -> dict[str, str] | None:
        """Tag values if ``topic`` matches, else None.  Topics starting with ``$`` never match a
        leading wildcard (MQTT 5.0 §4.7.2)."""
        parts = topic.split("/")
        levels = self.levels
        if topic.startswith("$") and levels and levels[0][0] != "lit":
            return None
        tags: dict[str, str] = {}
        for i, (kind, value) in enumerate(levels):
            if kind == "#":
                return tags
            if i >= len(parts):
                return None
            part = parts[i]
            if kind == "lit":
                if part != value:
                    return None
            elif kind == "tag":
                if not part:
                    return None
                tags[value] = part
        return tags if len(parts) == len(levels) else None


def parse_template(text: str) -> TopicTemplate:
    """Parse and validate a template; raises :class:`TopicTemplateError` saying what is wrong."""
    if not text:
        raise TopicTemplateError("a topic template cannot be empty")
    if len(text.encode("utf-8")) > 65535:
        raise TopicTemplateError("a topic is at most 65535 bytes")
    if "\x00" in text:
        raise TopicTemplateError("a topic cannot contain NUL")
    raw = text.split("/")
    levels: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, level in enumerate(raw):
        m = _PLACEHOLDER.match(level)
        if m:
            name = m.group(1)
            if name in seen:
                raise TopicTemplateError(f"placeholder {{{name}}} appears twice")
            seen.add(name)
            levels.append(("tag", name))
        elif level == "+":
            levels.append(("+", "+"))
        elif level == "#":
            if i != len(raw) - 1:
                raise TopicTemplateError("'#' must be the last level")
            levels.append(("#", "#"))
        elif any(c in level for c in "{}+#"):
            raise TopicTemplateError(
                f"level {level!r}: a placeholder ({{name}}, lowercase) or a wildcard (+, #) must fill a whole level"
            )
        else:
            levels.append(("lit", level))
    return TopicTemplate(text, tuple(levels))
