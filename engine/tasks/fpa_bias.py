"""BIAS01 / BIAS02 over the focal plane: offsets and read noise of the 144 quadrants of LE1 frames.

The same statistics as the block's bias family (bias.py), by the same functions:
- offsets: per frame the 5-sigma clipped mean of the trimmed prescan, image and overscan over the
  rows read (measures.quadrant_stats -> stats.region_stats), averaged over frames;
- read noise: each frame minus the per-pixel mean of the frames, exact residual histograms
  accumulated band by band (bandpass.NoiseAccumulator over stacking.quadrant_bands), so fixed
  pattern does not count as noise;
- the raw image-area std per frame (median over frames), as the block's RON_OOL check.
Each LE1 extension is read as quadrant Q of a CCD frame (le1.LE1Quadrant), which is what makes
those functions apply unchanged.

One work unit per quadrant (144, in LE1 HDU order): the LE1 paths and the extension's byte
offset, never pixels; each unit maps its extension of each frame and returns a small record.
Values go under the bias family's names (docs/results.md) per CCD `C_ji` and quadrant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.fpa import FPALayout
from ..formats.geometry import CCDGeometry
from ..formats.le1 import LE1Extension, LE1Quadrant
from .bandpass import NoiseAccumulator, window_rows
from .calproducts import NOMINAL_GAIN_E_PER_ADU
from .measures import REGIONS, quadrant_stats
from .stacking import band_rows_for, quadrant_bands
from .stats import CLIP_SIGMA

FPA_TESTS = {"BIAS01": "bias", "BIAS02": "bias"}  # the tests the FPA mode analyses, and their family
QUADRANT_VALUES = (
    *(f"offset_{r}_adu" for r in REGIONS),
    *(f"ron_{r}_adu" for r in REGIONS),
    *(f"ron_{r}_e" for r in REGIONS),
    "gain_e_per_adu_used",
    "std_image_raw_adu",
)
RON_METHOD = (f"std of each frame minus the per-pixel mean of the frames, {CLIP_SIGMA:g}-sigma clipped, pooled over "
              "frames, x sqrt(n/(n-1))")
OFFSET_METHOD = f"mean of {CLIP_SIGMA:g}-sigma clipped pixels per frame, averaged over frames"


@dataclass(frozen=True)
class FPAQuadrantResult:
    """What one quadrant's unit gives back: small numbers only."""

    extname: str
    levels: dict[str, list[float]]  # region -> per-frame clipped mean (ADU), frames used
    image_std: list[float]  # per frame used: robust std of the raw image area (ADU)
    ron: dict[str, float]  # region -> read noise (ADU); NaN with fewer than 2 frames
    frames_used: int
    saturated: int  # pixels at the ADC ceiling, over the frames used
    lost: int  # pixels at 0
    left_out: list[str] = field(default_factory=list)  # frames left out, each with why


def fpa_bias_unit(frames: Sequence[tuple[Path, LE1Extension]], geometry: CCDGeometry,
                  vstart: int = 0, vend: int | None = None) -> FPAQuadrantResult:
    """Worker: one quadrant of every LE1 frame (path, the extension's index entry), read once for
    the per-frame statistics and once, band by band, for the read noise."""
    extname = frames[0][1].name
    letter = frames[0][1].place.quadrant
    rows = window_rows(geometry, vstart, vend)
    with ExitStack() as stack:
        views: list[LE1Quadrant] = []
        stats = []
        left_out: list[str] = []
        for path, extension in frames:
            try:
                view = stack.enter_context(LE1Quadrant(path, extension, geometry))
                measured = quadrant_stats(view, letter, geometry, rows)
            except (ValueError, OSError) as exc:  # LE1Error is a ValueError
                left_out.append(f"{Path(path).name}: {getattr(exc, 'strerror', None) or exc}")
                continue
            if not math.isfinite(measured.prescan.clipped_mean):
                left_out.append(f"{Path(path).name}: prescan of {extname} all saturated or lost: no offset")
                continue
            views.append(view)
            stats.append(measured)
        n = len(views)
        ron = {r: math.nan for r in REGIONS}
        if n >= 2:
            noise = NoiseAccumulator(n, [s.prescan.clipped_mean for s in stats], geometry, letter)
            for band in quadrant_bands(geometry, letter, band_rows_for(n, geometry)):
                if band.image_rows == 0:
                    continue  # parallel overscan: not part of the region statistics
                noise.add(band, [v.section(band.frame_rows, band.cols) for v in views])
            ron = noise.result().ron
    return FPAQuadrantResult(
        extname=extname,
        levels={r: [getattr(s, r).clipped_mean for s in stats] for r in REGIONS},
        image_std=[s.image.std for s in stats],
        ron=dict(ron),
        frames_used=n,
        saturated=sum(s.saturated for s in stats),
        lost=sum(s.lost for s in stats),
        left_out=left_out,
    )


def quadrant_values(result: FPAQuadrantResult, gain: float) -> dict[str, float]:
    """The bias family's per-quadrant values of one FPA quadrant (not yet rounded)."""
    values: dict[str, float] = {}
    for region in REGIONS:
        levels = result.levels[region]
        values[f"offset_{region}_adu"] = float(np.mean(levels)) if levels else math.nan
    for region in REGIONS:
        values[f"ron_{region}_adu"] = result.ron[region]
    for region in REGIONS:
        values[f"ron_{region}_e"] = result.ron[region] * gain
    values["gain_e_per_adu_used"] = gain
    values["std_image_raw_adu"] = float(np.nanmedian(result.image_std)) if result.image_std else math.nan
    return values


def gain_of(extension: LE1Extension) -> tuple[float, str]:
    """(gain e-/ADU, where from): the extension's GAIN header key, else the nominal gain."""
    if extension.gain is not None and math.isfinite(extension.gain) and extension.gain > 0:
        return extension.gain, "LE1 header GAIN"
    return NOMINAL_GAIN_E_PER_ADU, f"nominal {NOMINAL_GAIN_E_PER_ADU} e-/ADU (no GAIN in the LE1 header)"


def fpa_values(results: Mapping[str, FPAQuadrantResult], layout: FPALayout, gains: Mapping[str, float],
               specs: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """`ccds -> C_ji -> quadrant -> value name -> value`, rounded as the bias family declares
    (`specs`: its ValueSpecs by name), CCDs and quadrants in LE1 order."""
    ccds: dict[str, dict[str, dict[str, Any]]] = {}
    for place in layout.quadrants:
        result = results.get(place.extname)
        if result is None:
            continue
        values = quadrant_values(result, gains[place.extname])
        ccds.setdefault(place.ccd.ccdid, {})[place.quadrant] = {
            name: (specs[name].round(value) if name in specs else value) for name, value in values.items()}
    return ccds


def fpa_flags(ccds: Mapping[str, Mapping[str, Mapping[str, Any]]], ron_limits: tuple[float, float],
              gradient_limits: tuple[float, float]) -> list[dict[str, Any]]:
    """The bias checks on the FPA's values: noise outside the RON limits (RON_OOL: the raw image
    std, prescan and overscan noise), image or overscan offset off the prescan's (POORQUALDATA)."""
    raised = []
    low, high = ron_limits
    g_low, g_high = gradient_limits
    for ccdid, quadrants in ccds.items():
        for quadrant, values in quadrants.items():
            for name in ("std_image_raw_adu", "ron_prescan_adu", "ron_overscan_adu"):
                value = values.get(name)
                if isinstance(value, float) and math.isfinite(value) and not low <= value <= high:
                    raised.append({"flag": "RON_OOL", "ccd": ccdid, "quadrant": quadrant,
                                   "reason": f"{name} {value:.3f} ADU outside [{low:g}, {high:g}] ADU"})
            prescan = values.get("offset_prescan_adu")
            for region in ("image", "overscan"):
                other = values.get(f"offset_{region}_adu")
                if isinstance(prescan, float) and isinstance(other, float) and math.isfinite(other - prescan) \
                        and not g_low <= other - prescan <= g_high:
                    raised.append({"flag": "POORQUALDATA", "ccd": ccdid, "quadrant": quadrant,
                                   "reason": f"{region} offset minus prescan offset {other - prescan:+.2f} ADU "
                                             f"outside [{g_low:g}, {g_high:g}] ADU"})
    return raised
