"""NL01/NL02/NL02RD: non-linearity curves per quadrant.

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..campaign.limits import GenericLimits, limit
from .base import AnalysisTask
from .family import Family


@dataclass(frozen=True)
class NonLinearityLimits(GenericLimits):
    flat_fluence_tolerance: float = limit(0.10, "fraction", "relative tolerance of flat fluence vs expected")


FAMILY = Family(
    name="nl",
    summary="NL01/NL02/NL02RD: non-linearity curves per quadrant.",
    subtasks=("init", "check", "prep", "extract", "basic", "meta", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"prep", "extract", "basic", "meta"}),
    limits=NonLinearityLimits,
)
