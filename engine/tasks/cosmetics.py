"""COSMETICS00: dark and flat defect masks per CCD (hot, dead, low-response pixels, bad columns).

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from .base import AnalysisTask
from .family import Family


FAMILY = Family(
    name="cosmetics",
    summary="COSMETICS00: dark and flat defect masks per CCD (hot, dead, low-response pixels, bad columns).",
    subtasks=("init", "check", "masks", "meta", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"masks", "meta"}),
)
