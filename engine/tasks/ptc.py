"""PTC01/PTC02: photon transfer curves, gain, full well per quadrant.

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..campaign.limits import GenericLimits, Range, limit
from .base import AnalysisTask
from .family import Family


@dataclass(frozen=True)
class PTCLimits(GenericLimits):
    gain_e_per_adu: Range = limit((3.1, 3.5), "e-/ADU", "PTC gain")
    flat_fluence_tolerance: float = limit(0.10, "fraction", "relative tolerance of flat fluence vs expected")


FAMILY = Family(
    name="ptc",
    summary="PTC01/PTC02: photon transfer curves, gain, full well per quadrant.",
    subtasks=("init", "check", "prep", "extract_PTC", "meta", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"prep", "extract_PTC", "meta"}),
    limits=PTCLimits,
)
