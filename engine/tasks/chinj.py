"""CHINJ01/CHINJ02: charge-injection lines versus IG1 and IDL (thresholds, notch, slope, uniformity).

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..campaign.limits import GenericLimits, limit
from .base import AnalysisTask
from .family import Family


@dataclass(frozen=True)
class InjectionLimits(GenericLimits):
    injection_tolerance: float = limit(0.5, "fraction", "relative tolerance of the injection level vs predicted")


FAMILY = Family(
    name="chinj",
    summary="CHINJ01/CHINJ02: charge-injection lines versus IG1 and IDL (thresholds, notch, slope, uniformity).",
    subtasks=("init", "check", "prep", "extract", "basic", "meta", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"prep", "extract", "basic", "meta"}),
    limits=InjectionLimits,
)
