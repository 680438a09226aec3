"""Parse untrusted YAML bytes into a positioned node tree within bounded time and memory.

Guards, in the order they apply (each failure is a Diagnostic, never an exception trace):
- size: files above MAX_BYTES are refused before being read whole;
- encoding: strict UTF-8, no NUL bytes (binary garbage), position of the first bad byte;
- structure: an event pass (PyYAML's parser is iterative) bounds nesting depth and event
  count before the recursive composer runs, so a deep document cannot exhaust the stack;
- aliases: expansion while converting is charged against MAX_NODES, which defuses
  "billion laughs" alias bombs while still allowing ordinary anchors;
- duplicate keys are reported with both positions (YAML would silently keep the last).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from controller.policy.diagnostics import Collector, DocumentError
from controller.policy.nodes import Mapping, Mark, Node, Scalar, Sequence

MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 40
MAX_EVENTS = 3_000_000
MAX_NODES = 2_000_000

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Budget(Exception):
    pass


def load_path(path: str | Path, display_name: str | None = None) -> Node:
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


def load_bytes(data: bytes, name: str) -> Node:
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
        _yaml_error(exc, collector)
        collector.raise_if_any()
        raise AssertionError("unreachable") from exc
    if root is None:
        collector.error(Mark(1, 1), "", "the file is empty", "a policy needs at least 'policy:' and 'zones:'")
        collector.raise_if_any()
    converter = _Converter(collector)
    try:
        tree = converter.convert(root)
    except _Budget:
        collector.error(
            _mark(root.start_mark), "",
            f"the document expands to more than {MAX_NODES:,} nodes (alias bomb?)",
            "avoid deeply nested anchors and aliases",
        )
    collector.raise_if_any()
    return tree


def _decode(data: bytes, collector: Collector) -> str:
    nul = data.find(b"\x00")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _position(data, exc.start)
        collector.error(Mark(line, col), "", f"not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                        "save the file as UTF-8 text")
        collector.raise_if_any()
        raise
    if nul >= 0:
        line, col = _position(data, nul)
        collector.error(Mark(line, col), "", "binary data (NUL byte) in a text file", "is this the right file?")
        collector.raise_if_any()
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
        _yaml_error(exc, collector)
    collector.raise_if_any()


def _yaml_error(exc: yaml.YAMLError, collector: Collector) -> None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    collector.error(_mark(mark) if mark else Mark(1, 1), "", message)


def _mark(mark: yaml.Mark) -> Mark:
    return Mark(mark.line + 1, mark.column + 1)


class _Converter:
    """yaml.Node graph -> our tree, expanding aliases under a node budget."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.constructor = yaml.SafeLoader("")
        self.visited = 0

    def convert(self, node: yaml.Node) -> Node:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise _Budget()
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
        items = explicit + [(k, v) for k, v in merged if k.text not in seen]
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
