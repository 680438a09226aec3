"""Every invalid policy in tests/corpus is rejected whole, with its expected, positioned message.

Each corpus file states what it must produce in header comments:
    # expect: <text that must appear in one error line>
    # expect-count: <number of errors>         (optional)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.cli import main
from controller.io.files import load_policy
from controller.policy.diagnostics import DocumentError

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(CORPUS.glob("*.yaml"))
_POSITION = re.compile(r"^.+\.yaml:\d+:\d+: ")


def _expectations(path: Path) -> tuple[list[str], int | None]:
    expects: list[str] = []
    count: int | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("# expect: "):
            expects.append(line.removeprefix("# expect: ").strip())
        elif line.startswith("# expect-count: "):
            count = int(line.removeprefix("# expect-count: "))
    return expects, count


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_invalid_policy_is_rejected_with_its_message(path: Path) -> None:
    expects, count = _expectations(path)
    assert expects, f"{path.name} has no '# expect:' line"
    with pytest.raises(DocumentError) as caught:
        load_policy(path)
    lines = [str(d) for d in caught.value.diagnostics]
    for line in lines:
        assert _POSITION.match(line), f"error without file:line:col: {line}"
    for expected in expects:
        assert any(expected in line for line in lines), f"{expected!r} not in:\n" + "\n".join(lines)
    if count is not None:
        assert len(lines) == count, "\n".join(lines)


@pytest.mark.parametrize("path", CASES[:5], ids=lambda p: p.stem)
def test_cli_exits_2_with_errors_on_stderr(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(path) in captured.err
