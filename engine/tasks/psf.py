"""PSF01/PSF02: spot shapes versus fluence and wavelength, and cross-talk between channels.

Today the generic init, check and report run; the analyses are declared and said "not
implemented" (run log, report, result.json, the app) until their issue lands.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..campaign.limits import GenericLimits, Range, limit
from .base import AnalysisTask
from .family import Family


@dataclass(frozen=True)
class PointSourceLimits(GenericLimits):
    point_background_adu: Range = limit((-1.0, 5.0), "ADU", "background around point sources")
    fwhm_px: Range = limit((1.2, 3.0), "pixels", "point-source FWHM")


FAMILY = Family(
    name="psf",
    summary="PSF01/PSF02: spot shapes versus fluence and wavelength, and cross-talk between channels.",
    subtasks=("init", "lock", "check", "prep", "basic", "meta", "xtalk_sex", "xtalk_build", "xtalk_meta", "report"),
    task=AnalysisTask,  # the generic init, check and report, until its analyses land
    not_implemented=frozenset({"lock", "prep", "basic", "meta", "xtalk_sex", "xtalk_build", "xtalk_meta"}),
    limits=PointSourceLimits,
)
