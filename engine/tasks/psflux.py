"""PSFLUX00: flux per spot and column against the expected fluence.

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from .psf import PointSourceLimits
from .base import AnalysisTask
from .family import Family


FAMILY = Family(
    name="psflux",
    summary="PSFLUX00: flux per spot and column against the expected fluence.",
    subtasks=("init", "lock", "check", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"lock"}),
    limits=PointSourceLimits,
)
