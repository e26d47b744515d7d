"""TP01/TP11 (vertical) and TP02/TP21 (serial) trap pumping: dipoles, release times, capture probabilities.

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..campaign.limits import GenericLimits, limit
from .base import AnalysisTask
from .family import Family


@dataclass(frozen=True)
class PumpingLimits(GenericLimits):
    injection_tolerance: float = limit(0.5, "fraction", "relative tolerance of the injection level vs predicted")


FAMILY = Family(
    name="tp",
    summary="TP01/TP11 (vertical) and TP02/TP21 (serial) trap pumping: dipoles, release times, capture probabilities.",
    subtasks=("init", "check", "prep", "injection", "extract", "basic", "meta", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"prep", "injection", "extract", "basic", "meta"}),
    limits=PumpingLimits,
)
