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

The work units are fpa_family.py's (one per quadrant, 144, in LE1 HDU order): this module says
what they compute for the bias family and how their records become its values (docs/results.md
names) per CCD `C_ji` and quadrant, and its checks.

With the `meta` step on, the same bands also feed the FPA master bias (fpa_products.py): the
per-pixel median and spread of the offset-subtracted frames, computed by the same compiled call
that accumulates the noise (bandpass.fuse_band), written in the LE1 orientation and compressed by
the unit itself, and the FPA cosmetics mask of its hot pixels. Memory: one band of the frames
(stacking.band_rows_for), whatever their number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .fpa_family import FPAFamily, FPAQuadrantResult
from .fpa_products import BIAS_PRODUCTS
from .measures import REGIONS
from .stats import CLIP_SIGMA

RON_METHOD = (f"std of each frame minus the per-pixel mean of the frames, {CLIP_SIGMA:g}-sigma clipped, pooled over "
              "frames, x sqrt(n/(n-1))")
OFFSET_METHOD = f"mean of {CLIP_SIGMA:g}-sigma clipped pixels per frame, averaged over frames"
NOISE_VALUES = ("ron_image_adu", "ron_prescan_adu", "ron_overscan_adu", "std_image_raw_adu")


def quadrant_values(result: FPAQuadrantResult, gain: float) -> dict[str, float]:
    """The bias family's per-quadrant values of one FPA quadrant (not yet rounded)."""
    values: dict[str, float] = {}
    for region in REGIONS:
        levels = result.levels(region)
        values[f"offset_{region}_adu"] = float(np.mean(levels)) if levels else math.nan
    for region in REGIONS:
        values[f"ron_{region}_adu"] = result.ron[region]
    for region in REGIONS:
        values[f"ron_{region}_e"] = result.ron[region] * gain
    values["gain_e_per_adu_used"] = gain
    image_std = [s.image.std for s in result.frame_stats]
    values["std_image_raw_adu"] = float(np.nanmedian(image_std)) if image_std else math.nan
    if result.master is not None:
        values["master_bias_std_adu"] = result.master.level.std
    return values


def fpa_flags(ccds: Mapping[str, Mapping[str, Mapping[str, Any]]], ron_limits: tuple[float, float],
              gradient_limits: tuple[float, float]) -> list[dict[str, Any]]:
    """The bias checks on the FPA's values: noise outside the RON limits (RON_OOL: the raw image
    std, prescan and overscan noise), image or overscan offset off the prescan's (POORQUALDATA)."""
    raised = ron_flags(ccds, ron_limits, ("std_image_raw_adu", "ron_prescan_adu", "ron_overscan_adu"))
    return raised + gradient_flags(ccds, gradient_limits, ("image", "overscan"))


def ron_flags(ccds: Mapping[str, Mapping[str, Mapping[str, Any]]], limits: tuple[float, float],
              names: tuple[str, ...]) -> list[dict[str, Any]]:
    """RON_OOL for each value of `names` outside the read-noise limits."""
    raised = []
    low, high = limits
    for ccdid, quadrants in ccds.items():
        for quadrant, values in quadrants.items():
            for name in names:
                value = values.get(name)
                if isinstance(value, float) and math.isfinite(value) and not low <= value <= high:
                    raised.append({"flag": "RON_OOL", "ccd": ccdid, "quadrant": quadrant,
                                   "reason": f"{name} {value:.3f} ADU outside [{low:g}, {high:g}] ADU"})
    return raised


def gradient_flags(ccds: Mapping[str, Mapping[str, Mapping[str, Any]]], limits: tuple[float, float],
                   regions: tuple[str, ...]) -> list[dict[str, Any]]:
    """POORQUALDATA for a region's offset off the prescan's by more than the gradient limits."""
    raised = []
    g_low, g_high = limits
    for ccdid, quadrants in ccds.items():
        for quadrant, values in quadrants.items():
            prescan = values.get("offset_prescan_adu")
            for region in regions:
                other = values.get(f"offset_{region}_adu")
                if isinstance(prescan, float) and isinstance(other, float) and math.isfinite(other - prescan) \
                        and not g_low <= other - prescan <= g_high:
                    raised.append({"flag": "POORQUALDATA", "ccd": ccdid, "quadrant": quadrant,
                                   "reason": f"{region} offset minus prescan offset {other - prescan:+.2f} ADU "
                                             f"outside [{g_low:g}, {g_high:g}] ADU"})
    return raised


FPA_FAMILY = FPAFamily(
    tests=("BIAS01", "BIAS02"),
    family="bias",
    summary="offsets and read noise per quadrant, the FPA master bias and cosmetics mask",
    quadrant_values=quadrant_values,
    flags=lambda ccds, limits: fpa_flags(ccds, tuple(limits.ron_adu), tuple(limits.offset_gradient_adu)),
    products=BIAS_PRODUCTS,
    noise=True,
    stack="meta",
    mask=True,
    test_values=lambda results: {"ron_method": RON_METHOD, "offset_method": OFFSET_METHOD},
    maps=("offset_prescan_adu", "ron_image_adu"),
    map_limits=lambda value, limits: tuple(limits.ron_adu) if value in NOISE_VALUES else None,
    report_title="Offsets and read noise (ADU)",
    report_columns=(("offset pre", "offset_prescan_adu", 2), ("offset img", "offset_image_adu", 2),
                    ("offset ove", "offset_overscan_adu", 2), ("RON pre", "ron_prescan_adu", 3),
                    ("RON img", "ron_image_adu", 3), ("RON ove", "ron_overscan_adu", 3),
                    ("master std", "master_bias_std_adu", 3)),
    report_method=f"Offsets: {OFFSET_METHOD}. Read noise: {RON_METHOD}.",
)
