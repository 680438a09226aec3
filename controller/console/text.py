"""Pure helpers for the console's text: policy diffs, errors located in their document, times.

Invariants: every function here is a pure function of its arguments (no clock, no I/O); a
time is always rendered as UTC with its offset (the page's script shows it in the browser's
own timezone, with that offset, and the UTC text stays the fallback).
"""

from __future__ import annotations

import calendar
import difflib
import re
import time
from dataclasses import dataclass, field

LOCATION = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.*)$", re.S)


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "remove", "context", "hunk"
    text: str


def policy_diff(old: str, new: str, old_name: str, new_name: str, context: int = 3) -> list[DiffLine]:
    """A unified diff of two policy texts, line by line, each marked by its kind."""
    lines = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, n=context, lineterm=""):
        if line.startswith(("---", "+++")):
            continue
        kind = {"@": "hunk", "+": "add", "-": "remove"}.get(line[:1], "context")
        lines.append(DiffLine(kind, line))
    return lines


@dataclass(frozen=True)
class LocatedError:
    line: int  # 1-based; 0 when the message names no line of the document
    col: int
    message: str


@dataclass(frozen=True)
class SourceLine:
    number: int
    text: str
    errors: tuple[LocatedError, ...] = field(default=())


def locate_errors(messages: list[str], file_name: str) -> list[LocatedError]:
    """Validation messages ("FILE:LINE:COL: what") as positions in the document named `file_name`."""
    located = []
    for message in messages:
        match = LOCATION.match(message)
        if match and match["file"] == file_name:
            located.append(LocatedError(int(match["line"]), int(match["col"]), match["message"]))
        else:
            located.append(LocatedError(0, 0, message))
    return located


def annotated_source(text: str, errors: list[LocatedError]) -> list[SourceLine]:
    """The document's lines, each with the errors located on it (errors beyond the end go on the last)."""
    lines = text.splitlines() or [""]
    by_line: dict[int, list[LocatedError]] = {}
    for error in errors:
        if error.line > 0:
            by_line.setdefault(min(error.line, len(lines)), []).append(error)
    return [SourceLine(number, line, tuple(by_line.get(number, ()))) for number, line in enumerate(lines, 1)]


def utc_text(timestamp: float | None) -> str:
    """An epoch time as `YYYY-MM-DD HH:MM:SS UTC+00:00` ('' for None)."""
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC+00:00", time.gmtime(timestamp))


def iso_utc(timestamp: float | None) -> str:
    return "" if timestamp is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def parse_iso_utc(text: str) -> float | None:
    """`YYYY-MM-DDTHH:MM:SSZ` (the events' time) as epoch seconds, None if it is not that."""
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None
