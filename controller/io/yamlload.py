"""Parse untrusted YAML bytes into a positioned node tree within bounded time and memory.

Guards, in the order they apply (each failure is a Diagnostic, never an exception trace):
- size: files above MAX_BYTES are refused before being read whole;
- encoding: strict UTF-8, no NUL bytes (binary garbage), position of the first bad byte;
- structure: an event pass (PyYAML's parser is iterative) bounds nesting depth and event
  count before the recursive composer runs, so a deep document cannot exhaust the stack;
- aliases: the expanded size is computed on the shared node graph before anything is
  expanded, which defuses "billion laughs" bombs while still allowing ordinary anchors;
- duplicate keys are reported with both positions (YAML would silently keep the last);
  the first occurrence is kept so validation can go on and report everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from controller.policy.diagnostics import Collector, Diagnostic, DocumentError
from controller.policy.nodes import Mapping, Mark, Node, Scalar, Sequence

MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 40
MAX_EVENTS = 3_000_000
MAX_NODES = 2_000_000

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Document:
    """A parsed tree plus problems that do not stop validation (e.g. duplicate keys, where the
    first occurrence is kept): the validator reports them together with its own findings."""

    tree: Node
    problems: tuple[Diagnostic, ...] = ()


def load_path(path: str | Path, display_name: str | None = None) -> Document:
    """Read and parse a file; raises DocumentError with positioned diagnostics."""
    name = display_name or str(path)
    collector = Collector(name)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        collector.error(Mark(1, 1), "", f"cannot read file: {exc.strerror or exc}")
        raise DocumentError(collector.items) from None
    return load_bytes(data, name)


def load_bytes(data: bytes, name: str) -> Document:
    collector = Collector(name)
    if len(data) > MAX_BYTES:
        collector.error(
            Mark(1, 1), "", f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB",
            "a policy this large is almost certainly not a policy; split generated inputs",
        )
        collector.raise_if_any()
    text = _decode(data, collector)
    _check_structure(text, collector)
    try:
        root = yaml.compose(text, Loader=_Loader)  # noqa: S506 - safe loader, composition only
    except yaml.YAMLError as exc:
        _yaml_error(exc, collector, text)
        collector.raise_if_any()
        raise AssertionError("unreachable") from exc
    if root is None:
        collector.error(Mark(1, 1), "", "the file is empty", "a policy needs at least 'policy:' and 'zones:'")
        collector.raise_if_any()
    size, depth = _expanded_shape(root)
    if size < 0:
        collector.error(_mark(root.start_mark), "", "an alias refers to a node that contains it (recursive YAML)",
                        "a policy is a tree: remove the self-referencing anchor")
    elif size > MAX_NODES:
        collector.error(
            _mark(root.start_mark), "",
            f"the document expands to more than {MAX_NODES:,} nodes through aliases (alias bomb?)",
            "avoid deeply nested anchors and aliases",
        )
    elif depth > MAX_DEPTH:
        collector.error(_mark(root.start_mark), "", f"aliases nest the document deeper than {MAX_DEPTH} levels",
                        "avoid chains of anchors that refer to each other")
    collector.raise_if_any()
    tree = _Converter(collector).convert(root)
    return Document(tree, tuple(collector.items))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _expanded_shape(root: yaml.Node) -> tuple[int, int]:
    """(node count, nesting depth) with every alias expanded, computed on the shared graph in
    linear time and without recursion (a chain of a thousand aliases must not exhaust the
    stack). The count is capped at MAX_NODES + 1; (-1, 0) for a recursive graph."""
    shape: dict[int, tuple[int, int]] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            children = _children(node)
            size = min(1 + sum(shape[id(c)][0] for c in children), MAX_NODES + 1)
            depth = 1 + max((shape[id(c)][1] for c in children), default=0) if children or not isinstance(
                node, yaml.ScalarNode) else 0
            shape[key] = (size, depth)
            on_path.discard(key)
            continue
        if key in shape:
            continue
        if key in on_path:
            return -1, 0
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                return -1, 0
            if id(child) not in shape:
                stack.append((child, False))
    return shape[id(root)]


def _decode(data: bytes, collector: Collector) -> str:
    nul = data.find(b"\x00")
    if nul >= 0:
        line, col = _position(data, nul)
        collector.error(Mark(line, col), "", "binary data (NUL byte) in a text file", "is this the right file?")
        collector.raise_if_any()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _position(data, exc.start)
        collector.error(Mark(line, col), "", f"not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                        "save the file as UTF-8 text")
        collector.raise_if_any()
        raise
    return text.removeprefix("\ufeff")


def _position(data: bytes, offset: int) -> tuple[int, int]:
    before = data[:offset]
    line = before.count(b"\n") + 1
    col = offset - (before.rfind(b"\n") + 1) + 1
    return line, col


def _check_structure(text: str, collector: Collector) -> None:
    depth = 0
    documents = 0
    try:
        for count, event in enumerate(yaml.parse(text, Loader=_Loader)):
            if count > MAX_EVENTS:
                collector.error(_mark(event.start_mark), "", f"the document has more than {MAX_EVENTS:,} elements")
                break
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    collector.error(_mark(event.start_mark), "", f"nesting deeper than {MAX_DEPTH} levels",
                                    "policies are at most a few levels deep")
                    break
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    collector.error(_mark(event.start_mark), "", "more than one YAML document in the file",
                                    "remove the second '---' document")
                    break
    except yaml.YAMLError as exc:
        _yaml_error(exc, collector, text)
    collector.raise_if_any()


def _yaml_error(exc: yaml.YAMLError, collector: Collector, text: str = "") -> None:
    mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    hint = ""
    if "end of stream" in problem and context and "quoted" in context and context_mark is not None:
        mark, hint = context_mark, "a quote opened here is never closed"
    mark = mark or context_mark
    if mark is not None and "\t" in _line(text, mark):
        hint = "tab character on this line: YAML indents with spaces only"
    elif "did not find expected key" in problem or "mapping values are not allowed" in problem:
        hint = "check the indentation of this line against the lines above"
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    collector.error(_mark(mark) if mark else Mark(1, 1), "", message, hint)


def _line(text: str, mark: yaml.Mark) -> str:
    lines = text.splitlines()
    return lines[mark.line] if 0 <= mark.line < len(lines) else ""


def _mark(mark: yaml.Mark) -> Mark:
    return Mark(mark.line + 1, mark.column + 1)


class _Converter:
    """yaml.Node graph -> our tree, expanding aliases under a node budget."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.constructor = yaml.SafeLoader("")

    def convert(self, node: yaml.Node) -> Node:
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return Sequence(tuple(self.convert(item) for item in node.value), _mark(node.start_mark))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        raise AssertionError(f"unexpected YAML node {node!r}")

    def _scalar(self, node: yaml.ScalarNode) -> Scalar:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            value = node.value
        except ValueError:  # e.g. an integer of more than 4,300 digits (Python refuses to convert it)
            self.collector.error(_mark(node.start_mark), "", f"a number of {len(node.value):,} characters",
                                 "no value in a policy needs more than a few digits")
            value = node.value
        return Scalar(node.value, value, _mark(node.start_mark), quoted=node.style in ("'", '"'))

    def _mapping(self, node: yaml.MappingNode) -> Mapping:
        explicit: list[tuple[Scalar, Node]] = []
        merged: list[tuple[Scalar, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_items(value_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.collector.error(_mark(key_node.start_mark), "", "a key must be plain text, not a list or mapping")
                continue
            explicit.append((self._scalar(key_node), self.convert(value_node)))
        seen: dict[str, Scalar] = {}
        for key, _ in explicit:
            if key.text in seen:
                first = seen[key.text]
                self.collector.error(key.mark, key.text, "duplicate key",
                                     f"first given at line {first.mark.line}, column {first.mark.col}; YAML would "
                                     "silently keep only the last one")
            else:
                seen[key.text] = key
        kept = [(k, v) for k, v in explicit if seen[k.text] is k]
        items = kept + [(k, v) for k, v in merged if k.text not in seen]
        return Mapping(tuple(items), _mark(node.start_mark))

    def _merge_items(self, value_node: yaml.Node) -> list[tuple[Scalar, Node]]:
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        items: list[tuple[Scalar, Node]] = []
        for source in sources:
            converted = self.convert(source)
            if not isinstance(converted, Mapping):
                self.collector.error(_mark(source.start_mark), "<<", "a merge key ('<<') must refer to a mapping")
                continue
            items.extend(converted.items)
        return items
