"""PERSIST01: residual charge after a saturating exposure, its decay, saturated footprints.

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from .base import AnalysisTask
from .family import Family


FAMILY = Family(
    name="persist",
    summary="PERSIST01: residual charge after a saturating exposure, its decay, saturated footprints.",
    subtasks=("init", "check", "prep", "satur_masks", "basic", "meta", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"prep", "satur_masks", "basic", "meta"}),
    saturation_expected=True,  # the test saturates on purpose
)
