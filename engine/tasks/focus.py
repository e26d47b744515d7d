"""FOCUS00: spot FWHM versus mirror position, best focus per CCD.

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from .psf import PointSourceLimits
from .base import AnalysisTask
from .family import Family


FAMILY = Family(
    name="focus",
    summary="FOCUS00: spot FWHM versus mirror position, best focus per CCD.",
    subtasks=("init", "lock", "check", "basic", "meta", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"lock", "basic", "meta"}),
    limits=PointSourceLimits,
)
