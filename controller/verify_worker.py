"""A verification in a process of its own: `python -m controller.verify_worker` reads what to verify
(the document GET /v1/tables answers, plus "failures") on stdin and prints the report as JSON.

Why a process: the verifier is CPU-bound Python and C (CUDD) that holds the interpreter lock for
long stretches. In the controller's process it would starve the event loop (LLDP, echoes,
barriers); here it runs beside it, at a lower priority (nice 10).
"""

from __future__ import annotations

import json
import os
import sys

from controller.core.codec import read_live_document
from controller.io.files import load_in_force
from controller.policy.diagnostics import DocumentError
from controller.verify.check import Verifier
from controller.verify_cli import report_json


def main() -> int:
    try:
        os.nice(10)
    except OSError:
        pass
    document = json.load(sys.stdin)
    try:
        policy = load_in_force(document["policy"])
    except DocumentError as error:
        print(json.dumps({"error": "; ".join(str(d) for d in error.diagnostics)}))
        return 2
    topology, located, tables, names = read_live_document(document)
    verifier = Verifier(policy, topology, located, failures=bool(document.get("failures", True)),
                        examples_per_invariant=1)
    verifier.names = names  # type: ignore[attr-defined]
    report = verifier.check(tables)
    answer = report_json(report, names)
    answer["described"] = [finding.describe(names) for finding in report.findings[:5]]
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
