"""BF01/BF01WAVE: pixel covariances and brighter-fatter kernels (on PTC data).

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from .base import AnalysisTask
from .family import Family


FAMILY = Family(
    name="bf",
    summary="BF01/BF01WAVE: pixel covariances and brighter-fatter kernels (on PTC data).",
    subtasks=("init", "check", "prep", "extract_COV", "extract_BF", "meta", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"prep", "extract_COV", "extract_BF", "meta"}),
)
