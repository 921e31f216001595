"""YAML events → nodes without recursion: libyaml's parser when PyYAML has it (ten times faster than
the pure-Python one), a depth limit checked as the events arrive, and a count of the nodes for the
alias budget. The nodes are PyYAML's own, tagged as ``yaml.SafeLoader`` would tag them.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.resolver import Resolver


class TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _PyParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


_PARSER: Any
try:
    from yaml.cyaml import CParser as _PARSER
except ImportError:  # PyYAML built without libyaml
    _PARSER = _PyParser
_NO_KEY = object()


def compose(text: str, max_depth: int) -> tuple[yaml.Node | None, int]:
    """The single document of ``text`` as a node tree, and its number of nodes (aliases not counted).

    Raises ``yaml.MarkedYAMLError`` for syntax, :class:`TooDeep` past ``max_depth`` levels."""
    parser = _PARSER(text)
    try:
        return _compose(parser, max_depth)
    finally:
        parser.dispose()


def _compose(parser: Any, max_depth: int) -> tuple[yaml.Node | None, int]:
    resolver = Resolver()
    parser.get_event()  # stream start
    if parser.check_event(yaml.StreamEndEvent):
        return None, 0
    parser.get_event()  # document start
    anchors: dict[str, yaml.Node] = {}
    stack: list[list[Any]] = []  # [collection node, pending key of a mapping]
    root: yaml.Node | None = None
    count = 0
    while True:
        event = parser.get_event()
        if isinstance(event, yaml.DocumentEndEvent):
            break
        if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            stack.pop()[0].end_mark = event.end_mark
            continue
        node: yaml.Node
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                raise yaml.composer.ComposerError(None, None, f"found undefined alias {event.anchor!r}",
                                                  event.start_mark)
            node = anchors[event.anchor]
        else:
            count += 1
            node = _node(event, resolver)
            if event.anchor is not None:
                anchors[event.anchor] = node  # before its children: a recursive alias is caught later
        if stack:
            parent = stack[-1]
            if isinstance(parent[0], yaml.SequenceNode):
                parent[0].value.append(node)
            elif parent[1] is _NO_KEY:
                parent[1] = node
            else:
                parent[0].value.append((parent[1], node))
                parent[1] = _NO_KEY
        else:
            root = node
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([node, _NO_KEY])
            if len(stack) > max_depth:
                raise TooDeep(event.start_mark.line + 1)
    if not parser.check_event(yaml.StreamEndEvent):
        event = parser.get_event()
        raise yaml.composer.ComposerError("expected a single document in the stream", None,
                                          "but found another document", event.start_mark)
    return root, count


def _node(event: Any, resolver: Resolver) -> yaml.Node:
    tag = event.tag
    if isinstance(event, yaml.ScalarEvent):
        if tag is None or tag == "!":
            tag = resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
        return yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
    kind = yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else yaml.MappingNode
    if tag is None or tag == "!":
        tag = resolver.resolve(kind, None, event.implicit)
    return kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
