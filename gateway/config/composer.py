"""A YAML composer that refuses hostile documents before anything walks them.

ruamel.yaml keeps an aliased node shared, so composing is linear in the text; the cost comes
later, when the loader walks the tree and every ``*alias`` is expanded again. A "billion
laughs" document of a few hundred bytes expands to 10^9 values (60 s and 6 GB before this
guard). So, while composing, count what the walk will visit: every node once, plus, at each
alias, the expanded size of the node it names. Past a budget the document is refused at the
alias that crossed it. The same pass refuses:

- recursive aliases (``&a [*a]``): the walk would never end;
- nesting deeper than the composer's recursion can go;
- tags other than plain YAML's (``!foo``, ``!!python/name:...``, ``!!binary``): the config is
  data, and a tag the gateway does not know would otherwise crash the constructor.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml.composer import Composer
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_NODES = 100_000  # values the loader may visit, aliases expanded
MAX_ALIASES = 10_000  # alias uses per document
MAX_DEPTH = 100  # nesting of mappings and lists

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp",
                                             "merge"))
_KIND_TAGS = {ScalarNode: _SCALAR_TAGS, SequenceNode: frozenset({_CORE + "seq"}),
              MappingNode: frozenset({_CORE + "map"})}
_KIND_NAMES = {ScalarNode: "a single value", SequenceNode: "a list", MappingNode: "a mapping"}


class YAMLRefused(Exception):
    """A document the loader will not walk; ``mark`` is where (0-based line and column)."""

    def __init__(self, mark: Any, message: str, hint: str | None = None):
        super().__init__(message)
        self.line = mark.line + 1 if mark is not None else 1
        self.column = mark.column + 1 if mark is not None else 1
        self.message = message
        self.hint = hint


class GuardedComposer(Composer):
    """ruamel's Composer plus the budget, depth and tag checks described above."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.total = 0  # nodes the walk will visit so far
        self.aliases = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded
        self._open: list[int] = []  # per node being composed: the sizes of its children so far

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            self._alias(event)
            return super().compose_node(parent, index)
        if len(self._open) >= MAX_DEPTH:
            raise YAMLRefused(event.start_mark, f"the document nests deeper than {MAX_DEPTH} "
                              "levels", "flatten it: no gateway config needs this depth")
        self._add(1, event.start_mark, None)
        self._open.append(0)
        node = super().compose_node(parent, index)
        size = 1 + self._open.pop()
        self._sizes[id(node)] = size
        if self._open:
            self._open[-1] += size
        _check_tag(node)
        return node

    def _alias(self, event: AliasEvent) -> None:
        node = self.anchors.get(event.anchor)
        if node is None:
            return  # ruamel reports the undefined alias
        size = self._sizes.get(id(node))
        if size is None:
            raise YAMLRefused(event.start_mark, f"alias *{event.anchor} refers to a value that "
                              "contains it (a recursive alias)", "aliases must name a finished "
                              "value")
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise YAMLRefused(event.start_mark, f"the document uses more than {MAX_ALIASES} "
                              "aliases", "write the values out, or use fewer anchors")
        self._add(size, event.start_mark, event.anchor)
        if self._open:
            self._open[-1] += size

    def _add(self, size: int, mark: Any, alias: str | None) -> None:
        self.total += size
        if self.total <= MAX_NODES:
            return
        if alias is None:
            raise YAMLRefused(mark, f"the document has more than {MAX_NODES} values",
                              "split it, or move bulk data out of the config")
        raise YAMLRefused(mark, f"alias *{alias} expands the document to more than {MAX_NODES} "
                          f"values ({size} at this alias)", "an alias bomb? use anchors only "
                          "for small, shared pieces of config")


def _check_tag(node: Node) -> None:
    tag = str(node.tag)
    kind = type(node)
    if tag in _KIND_TAGS.get(kind, ()):
        return
    shown = "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag
    if any(tag in tags for tags in _KIND_TAGS.values()):
        message = f"YAML tag {shown} cannot mark {_KIND_NAMES[kind]}"
    else:
        message = f"unknown YAML tag {shown}; gateway.yaml uses plain YAML"
    raise YAMLRefused(node.start_mark, message, "remove the tag")
