"""A YAML document as a small positioned tree, independent of the YAML library.

The loader (controller.io.yamlload) builds it; the validators read it. Every node carries
the 1-based line and column where it starts, so every error can point at its source.
Scalars keep both the raw text and the YAML-resolved value: a MAC written unquoted
(`00:00:00:00:02:01`) is a base-60 integer to YAML 1.1, so address fields read `text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Mark:
    line: int
    col: int


@dataclass(frozen=True)
class Scalar:
    text: str
    value: object
    mark: Mark
    quoted: bool = False


@dataclass(frozen=True)
class Mapping:
    items: tuple[tuple[Scalar, "Node"], ...]
    mark: Mark

    def get(self, key: str) -> "Node | None":
        for k, v in self.items:
            if k.text == key:
                return v
        return None

    def key_node(self, key: str) -> Scalar | None:
        for k, _ in self.items:
            if k.text == key:
                return k
        return None


@dataclass(frozen=True)
class Sequence:
    items: tuple["Node", ...]
    mark: Mark


Node = Union[Scalar, Mapping, Sequence]


def kind_of(node: Node) -> str:
    """How a node is named in error messages."""
    if isinstance(node, Mapping):
        return "a mapping"
    if isinstance(node, Sequence):
        return "a list"
    if node.value is None:
        return "empty"
    if isinstance(node.value, bool):
        return f"the boolean {node.text}"
    if isinstance(node.value, (int, float)):
        return f"the number {node.text}"
    text = node.text if len(node.text) <= 60 else node.text[:40] + f"... ({len(node.text):,} characters)"
    return f"the text {text!r}"
