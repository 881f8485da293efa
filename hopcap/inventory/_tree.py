"""A YAML document as a tree of located nodes.

PyYAML's `safe_load` loses positions and silently keeps the last of two duplicate keys.
Here the document is composed into PyYAML nodes (which carry marks) and converted into
`Scalar` / `Seq` / `Map`, each with its 1-based line and column. A `Map` keeps every
key, duplicates included, so the schema layer can report them with both positions.
Aliases are shared (never expanded twice), so an alias bomb costs nothing; recursive
aliases and unsupported tags become problems, never exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from hopcap.errors import Problem

MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class UnknownTag:
    """The value of a scalar whose tag safe YAML does not construct (`!vault`, `!!python/...`)."""

    tag: str
    text: str


@dataclass(eq=False)
class TNode:
    line: int | None
    col: int | None


@dataclass(eq=False)
class Scalar(TNode):
    value: object  # str, int, float, bool, None, datetime, bytes or UnknownTag
    text: str  # the scalar as written (keys are always taken as written)


@dataclass(eq=False)
class Seq(TNode):
    items: list[TNode] = field(default_factory=list)


@dataclass(eq=False)
class Map(TNode):
    # every (key, value) pair in document order, duplicates included
    items: list[tuple[Scalar, TNode]] = field(default_factory=list)

    def get(self, key: str) -> TNode | None:
        for k, v in self.items:
            if k.text == key:
                return v
        return None


def describe(node: TNode) -> str:
    """What a node is, for 'expected X, got Y' messages."""
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    assert isinstance(node, Scalar)
    v = node.value
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"a boolean ({node.text})"
    if isinstance(v, int):
        return f"a number ({node.text})"
    if isinstance(v, float):
        return f"a number ({node.text})"
    if isinstance(v, UnknownTag):
        return f"a value tagged {v.tag}"
    if isinstance(v, str):
        return f"a string ('{_short(v)}')"
    return f"{type(v).__name__} ({_short(node.text)})"


def _short(s: str, n: int = 40) -> str:
    s = s.replace("\n", "\\n")
    return s if len(s) <= n else s[: n - 1] + "…"


class _Loader(yaml.SafeLoader):
    pass


class Converter:
    """Turns a composed PyYAML node graph into a located tree, collecting problems."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        self._done: dict[int, TNode] = {}
        self._busy: set[int] = set()
        self._constructor = _Loader("")

    def _problem(self, node: Node, message: str) -> None:
        m = node.start_mark
        self.problems.append(Problem(self.file, m.line + 1, m.column + 1, None, message))

    def convert(self, node: Node) -> TNode:
        key = id(node)
        done = self._done.get(key)
        if done is not None:
            return done
        m = node.start_mark
        line, col = m.line + 1, m.column + 1
        if key in self._busy:
            self._problem(node, "recursive YAML alias (a value that contains itself)")
            return Scalar(line, col, None, "")
        self._busy.add(key)
        try:
            out: TNode
            if isinstance(node, ScalarNode):
                out = Scalar(line, col, self._scalar(node), node.value)
            elif isinstance(node, SequenceNode):
                out = Seq(line, col, [self.convert(n) for n in node.value])
            elif isinstance(node, MappingNode):
                out = self._mapping(node, line, col)
            else:  # pragma: no cover - PyYAML has only these three
                out = Scalar(line, col, None, "")
        finally:
            self._busy.discard(key)
        self._done[key] = out
        return out

    def _scalar(self, node: ScalarNode) -> object:
        tag = node.tag or ""
        if tag.startswith("tag:yaml.org,2002:") or tag == "!":
            try:
                return self._constructor.construct_object(node, deep=True)
            except Exception:  # bad timestamps, bad base64, ...: keep the text
                if tag == "tag:yaml.org,2002:str":
                    return node.value
                return UnknownTag(tag, node.value)
        return UnknownTag(tag, node.value)

    def _mapping(self, node: MappingNode, line: int, col: int) -> Map:
        own: list[tuple[Scalar, TNode]] = []
        merged: list[tuple[Scalar, TNode]] = []
        for knode, vnode in node.value:
            if knode.tag == MERGE_TAG:
                merged.extend(self._merge_source(vnode))
                continue
            if not isinstance(knode, ScalarNode):
                self._problem(knode, "a key must be a plain name, not a list or a mapping")
                continue
            k = self.convert(knode)
            assert isinstance(k, Scalar)
            own.append((k, self.convert(vnode)))
        if merged:
            seen = {k.text for k, _ in own}
            for k, v in merged:
                if k.text not in seen:
                    seen.add(k.text)
                    own.append((k, v))
        return Map(line, col, own)

    def _merge_source(self, vnode: Node) -> list[tuple[Scalar, TNode]]:
        sources = vnode.value if isinstance(vnode, SequenceNode) else [vnode]
        out: list[tuple[Scalar, TNode]] = []
        for s in sources:
            conv = self.convert(s)
            if isinstance(conv, Map):
                out.extend(conv.items)
            else:
                self._problem(s, f"'<<' merges a mapping, got {describe(conv)}")
        return out


def _char_name(c: object) -> str:
    if isinstance(c, int):
        return f"control character U+{c:04X}"
    return f"character {c!r}"


def parse_yaml(text: str, file: str, problems: list[Problem]) -> TNode | None:
    """Compose `text` into a located tree; None (with a problem recorded) when it is not YAML
    or holds no document."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = e.problem or "invalid YAML"
        if e.context:
            what = f"{e.context}, {what}"
        if "'\\t'" in what:
            what += " (indent with spaces, not tabs)"
        problems.append(
            Problem(
                file,
                mark.line + 1 if mark else None,
                mark.column + 1 if mark else None,
                None,
                f"YAML syntax error: {what}",
            )
        )
        return None
    except yaml.reader.ReaderError as e:  # control characters and the like
        before = text[: e.position]
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        problems.append(
            Problem(file, line, col, None, f"{_char_name(e.character)} is not allowed in YAML")
        )
        return None
    except yaml.YAMLError as e:
        problems.append(Problem(file, None, None, None, f"not a YAML file: {e}"))
        return None
    if node is None:
        return None
    return Converter(file, problems).convert(node)
