"""Hostile policy files are refused with a positioned error, within bounded time and memory.

Each case runs `otseg validate` in a child process capped at 1 GiB of address space and
60 s: a hang or a memory blow-up fails the test instead of taking the runner down.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LIMITS = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))"


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    code = f"{LIMITS}\nimport sys\nfrom controller.cli import main\nsys.exit(main(['validate', {str(path)!r}]))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)


def _alias_bomb() -> bytes:
    lines = ["policy: bomb", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append("zones: {z: {description: *a9}}")
    return "\n".join(lines).encode()


CASES = {
    "alias-bomb": (_alias_bomb(), "alias bomb"),
    "deep-nesting": (b"policy: deep\nzones: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nesting deeper than"),
    "deep-block-nesting": (b"policy: deep\nzones:\n" + b"".join(b"  " * i + b"k%d:\n" % i for i in range(200)),
                           "nesting deeper than"),
    "binary-garbage": (bytes(range(256)) * 64, "NUL byte"),
    "not-utf8": (b"policy: caf\xe9\nzones: {a: {}}\n", "not valid UTF-8"),
    "duplicate-keys": (b"policy: p\nzones:\n  a: {}\n  a: {level: 1}\n", "duplicate key"),
    "many-documents": (b"policy: p\nzones: {a: {}}\n---\npolicy: q\n", "more than one YAML document"),
    "only-a-scalar": (b"just some text\n", "must be a mapping"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_is_refused_cleanly(name: str, tmp_path: Path) -> None:
    data, expected = CASES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(data)
    result = _validate(path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:"), first


def test_fifty_megabyte_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as handle:
        handle.write(b"policy: huge\nzones:\n")
        chunk = b"".join(b"  z%07d: {level: 1}\n" % i for i in range(100_000))
        while handle.tell() < 50 * 1024 * 1024:
            handle.write(chunk)
    result = _validate(path)
    assert result.returncode == 2
    assert "larger than" in result.stderr
