"""Fuzz the YAML loader and the policy validator: whatever the bytes, the answer is a policy or a
DocumentError with positioned diagnostics, never another exception (no traceback reaches the
CLI or the API)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.io.files import load_policy_text
from controller.policy.diagnostics import DocumentError
from tests.conftest import POLICIES

SEED = (POLICIES / "plant.yaml").read_text()
FRAGMENTS = ["policy:", "zones:", "assets:", "conduits:", "services:", "- ", "  ", "\n", ": ", "&a ", "*a", "<<: ",
             "[", "]", "{", "}", ",", "'", '"', "!!python/object:os.system ", "!!binary ", "? ", "---\n", "...\n",
             "9" * 5000, "-1", "0x10", "1e999", ".nan", "~", "null", "true", "mac: ", "ip: ", "location: ",
             "vlan: ", "stateful: ", "from: ", "to: ", "\t", "#", "%YAML 1.1\n", "\ufeff", "é", "\u2028"]


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["fragments", "mutated", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=400))
    if kind == "fragments":
        return "".join(draw(st.lists(st.sampled_from(FRAGMENTS), max_size=60))).encode()
    lines = SEED.splitlines()
    for _ in range(draw(st.integers(1, 6))):
        index = draw(st.integers(0, len(lines) - 1))
        lines[index] = draw(st.sampled_from([
            lines[index][: draw(st.integers(0, max(0, len(lines[index]))))],
            lines[index] + draw(st.sampled_from(FRAGMENTS)),
            draw(st.sampled_from(FRAGMENTS)) + lines[index],
            "",
        ]))
    return "\n".join(lines).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_any_document_is_a_policy_or_a_clear_error(data: bytes) -> None:
    try:
        load_policy_text(data, "fuzz.yaml")
    except DocumentError as error:
        assert error.diagnostics and all(str(d).startswith("fuzz.yaml:") for d in error.diagnostics)
