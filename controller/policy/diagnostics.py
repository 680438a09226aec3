"""Errors a person can act on: file:line:col, the offending key, what is wrong, a hint.

A Diagnostic is a value; collecting them (rather than raising on the first) lets the
validator report every error of a document at once.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

from controller.policy.nodes import Mark


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str
    line: int
    col: int
    context: str  # e.g. "conduit 'historian-collects'" or "assets.hmi-1.ip"
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        text = f"{where}: {self.context}: {self.message}" if self.context else f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class DocumentError(Exception):
    """A document was rejected; `diagnostics` holds every reason, in file order."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = tuple(sorted(diagnostics))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A 'did you mean' hint for a misspelt name, or '' if nothing is close."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


class Collector:
    """Accumulates diagnostics for one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Diagnostic] = []

    def error(self, mark: Mark, context: str, message: str, hint: str = "") -> None:
        self.items.append(Diagnostic(self.file, mark.line, mark.col, context, message, hint))

    def raise_if_any(self) -> None:
        if self.items:
            raise DocumentError(self.items)
