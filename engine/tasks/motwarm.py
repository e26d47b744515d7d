"""MOT_WARM: warm readiness checks before cool-down (offsets, RON, injection and flat frames, image bits).

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from .base import AnalysisTask
from .family import Family


FAMILY = Family(
    name="motwarm",
    summary="MOT_WARM: warm readiness checks before cool-down (offsets, RON, injection and flat frames, image bits).",
    subtasks=("init", "check", "basic", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"basic"}),
)
