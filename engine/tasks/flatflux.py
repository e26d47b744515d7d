"""FLATFLUX00: flat fluence and flux per column against the expected relative fluences.

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..campaign.limits import GenericLimits, limit
from .base import AnalysisTask
from .family import Family


@dataclass(frozen=True)
class FlatFluxLimits(GenericLimits):
    flat_fluence_tolerance: float = limit(0.10, "fraction", "relative tolerance of flat fluence vs expected")


FAMILY = Family(
    name="flatflux",
    summary="FLATFLUX00: flat fluence and flux per column against the expected relative fluences.",
    subtasks=("init", "check", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset(()),
    limits=FlatFluxLimits,
)
