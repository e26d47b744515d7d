"""FLAT01/FLAT02/FLAT_STB: illumination model, normalised flats, master flats and PRNU.

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..campaign.limits import GenericLimits, limit
from .base import AnalysisTask
from .family import Family


@dataclass(frozen=True)
class FlatLimits(GenericLimits):
    flat_fluence_tolerance: float = limit(0.10, "fraction", "relative tolerance of flat fluence vs expected")


FAMILY = Family(
    name="flat",
    summary="FLAT01/FLAT02/FLAT_STB: illumination model, normalised flats, master flats and PRNU.",
    subtasks=("init", "check", "prep", "ccdobjs", "do_indiv_flats", "do_master_flats", "prmask", "meta", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"prep", "ccdobjs", "do_indiv_flats", "do_master_flats", "prmask", "meta"}),
    limits=FlatLimits,
    needs=("master_bias", "cosmetics_mask"),
)
