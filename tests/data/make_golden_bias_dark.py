"""Writes tests/data/golden_bias_dark.json: result.json numbers of BIAS01, BIAS02 and DARK01 on the
small simulated day (seed 0), as the engine gave them before the family contract (commit 27fc72a).

test_family_contract.py compares today's numbers with these. Re-run only when a change of the
numbers is intended (and say why in the commit): .venv/bin/python tests/data/make_golden_bias_dark.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden_run import golden_numbers  # noqa: E402  (tests/golden_run.py)

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        numbers = golden_numbers(Path(tmp))
    target = Path(__file__).with_name("golden_bias_dark.json")
    target.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
    print(f"wrote {target}")
