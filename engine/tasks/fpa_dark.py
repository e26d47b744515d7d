"""DARK01 over the focal plane: dark current and hot pixels of the 144 quadrants of LE1 frames.

The block DARK01's analysis (dark.py), by its functions and constants, on each LE1 quadrant:
- the per-pixel median of the offset-subtracted frames (offset: each frame's prescan clipped
  mean), computed band by band by the block's compiled pass (fpa_family.py's unit);
- dark signal = the clipped mean of that stack's image pixels (hot pixels drop out), ADU per
  exposure; dark current = signal x gain / exposure time (dark.dark_rate_e_per_pix_per_hour),
  the exposure time being the extensions' EXPTIME (the FPA log has none);
- hot pixels: stack pixels more than dark.HOT_PIXEL_THRESHOLD_ADU above that level;
- the check's values: the image "fluence" (dark.frame_fluence_adu, median over frames) within
  DARK_FLUENCE_WINDOW_ADU (FLUENCE_OOL), offsets and noise of prescan and overscan as the
  generic check measures them (medians over frames), RON_OOL, and the overscan offset against the
  prescan's (POORQUALDATA, as check_dark_gradients).
Products (`meta`): the FPA master dark (DARK: the median stack; _ERR: std / sqrt(NCOMB), as the
block's EDARK) and the FPA cosmetics mask, in the LE1 layout (fpa_products.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .dark import (
    DARK_FLUENCE_WINDOW_ADU,
    HOT_PIXEL_THRESHOLD_ADU,
    MASTER_DARK,
    dark_rate_e_per_pix_per_hour,
    frame_fluence_adu,
)
from .fpa_bias import gradient_flags, ron_flags
from .fpa_family import FPAFamily, FPAQuadrantResult, check_values, median_or_nan
from .fpa_products import MASK_PRODUCT, master_products
from .stats import CLIP_SIGMA

DARK_METHOD = ("clipped mean over the image pixels of the per-pixel median of the offset-subtracted frames, "
               "x gain / exptime")


def exposure_time_s(result: FPAQuadrantResult) -> float:
    """The quadrant's frames' exposure time (EXPTIME of its extensions; their median), NaN if none."""
    return median_or_nan([t for t in result.exptimes if t is not None])


def quadrant_values(result: FPAQuadrantResult, gain: float) -> dict[str, float]:
    """The dark family's per-quadrant values of one FPA quadrant (not yet rounded)."""
    values = check_values(result)  # the generic check's: medians over frames
    values["fluence_adu"] = median_or_nan([frame_fluence_adu(s) for s in result.frame_stats])
    signal = result.master.level.mean if result.master is not None else math.nan
    values["dark_signal_adu"] = signal
    values["dark_e_per_pix_per_hour"] = dark_rate_e_per_pix_per_hour(signal, gain, exposure_time_s(result))
    values["hot_pixels"] = result.master.hot_count if result.master is not None else None
    values["gain_e_per_adu_used"] = gain
    return values


def dark_flags(ccds: Mapping[str, Mapping[str, Mapping[str, Any]]], limits: Any) -> list[dict[str, Any]]:
    """FLUENCE_OOL (image level above the offsets outside the window), RON_OOL (prescan and
    overscan noise), POORQUALDATA (overscan offset off the prescan's)."""
    low, high = DARK_FLUENCE_WINDOW_ADU
    raised = []
    for ccdid, quadrants in ccds.items():
        for quadrant, values in quadrants.items():
            fluence = values.get("fluence_adu")
            if isinstance(fluence, float) and math.isfinite(fluence) and not low <= fluence <= high:
                raised.append({"flag": "FLUENCE_OOL", "ccd": ccdid, "quadrant": quadrant,
                               "reason": f"dark image level {fluence:+.2f} ADU above the offsets (median over "
                                         f"frames) outside [{low:g}, {high:g}] ADU"})
    raised += ron_flags(ccds, tuple(limits.ron_adu), ("ron_prescan_adu", "ron_overscan_adu"))
    return raised + gradient_flags(ccds, tuple(limits.offset_gradient_adu), ("overscan",))


def dark_test_values(results: Sequence[FPAQuadrantResult]) -> dict[str, Any]:
    exptimes = sorted({t for r in results for t in r.exptimes if t is not None})
    return {"exptime_s": exptimes, "hot_pixel_threshold_adu": HOT_PIXEL_THRESHOLD_ADU, "dark_method": DARK_METHOD}


def product_cards(results: Sequence[FPAQuadrantResult]) -> list[tuple[str, Any, str]]:
    exptimes = [t for r in results for t in r.exptimes if t is not None]
    return [("EXPTIME", float(np.median(exptimes)) if exptimes else -1.0, "exposure time of the frames (s)"),
            ("HOTTHR", HOT_PIXEL_THRESHOLD_ADU, "hot pixel: ADU above the quadrant's level")]


FPA_FAMILY = FPAFamily(
    tests=("DARK01",),
    family="dark",
    summary="dark current per quadrant (e-/pix/h), hot pixels, the FPA master dark and cosmetics mask",
    quadrant_values=quadrant_values,
    flags=dark_flags,
    products=(*master_products("MASTERDARK", MASTER_DARK.spread), MASK_PRODUCT),
    stack="always",
    spread=MASTER_DARK.spread,
    mask=True,
    hot_threshold_adu=HOT_PIXEL_THRESHOLD_ADU,
    test_values=dark_test_values,
    maps=("dark_e_per_pix_per_hour", "hot_pixels"),
    report_title="Dark current and hot pixels",
    report_columns=(("offset pre (ADU)", "offset_prescan_adu", 2), ("fluence (ADU)", "fluence_adu", 3),
                    ("signal (ADU)", "dark_signal_adu", 3), ("dark (e-/pix/h)", "dark_e_per_pix_per_hour", 3),
                    ("hot", "hot_pixels", 0), ("mask hot", "mask_hot_pixels", 0)),
    report_method=(f"Dark signal: {CLIP_SIGMA:g}-sigma clipped mean of the image pixels of the per-pixel median of "
                   "the offset-subtracted frames (offset: each frame's prescan clipped mean), ADU per exposure; "
                   "dark current = signal x gain / exposure time (the extensions' EXPTIME). Hot pixels: more "
                   f"than {HOT_PIXEL_THRESHOLD_ADU:g} ADU above the quadrant's level in the median stack. Fluence "
                   "(check): raw image median minus the mean of the prescan and overscan medians, median over "
                   f"frames, within [{DARK_FLUENCE_WINDOW_ADU[0]:g}, {DARK_FLUENCE_WINDOW_ADU[1]:g}] ADU."),
    product_cards=product_cards,
)
