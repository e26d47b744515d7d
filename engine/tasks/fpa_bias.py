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

With the `meta` step on, the same bands also feed the FPA master bias (fpa_products.py): the
per-pixel median and spread of the offset-subtracted frames, computed by the same compiled call
that accumulates the noise (bandpass.fuse_band), written in the LE1 orientation and compressed by
the unit itself. Memory: one band of the frames (stacking.band_rows_for), whatever their number.
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
from .bandpass import NoiseAccumulator, fuse_band, window_rows
from .calproducts import NOMINAL_GAIN_E_PER_ADU
from .fpa_products import LE1StackTarget, LE1StackWriter, QuadrantMaster, quadrant_read_noise
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
    "master_bias_std_adu",  # with the meta step
)
RON_METHOD = (f"std of each frame minus the per-pixel mean of the frames, {CLIP_SIGMA:g}-sigma clipped, pooled over "
              "frames, x sqrt(n/(n-1))")
OFFSET_METHOD = f"mean of {CLIP_SIGMA:g}-sigma clipped pixels per frame, averaged over frames"


@dataclass(frozen=True)
class FPAQuadrantResult:
    """What one quadrant's unit gives back: small numbers only (and where its master planes are)."""

    extname: str
    levels: dict[str, list[float]]  # region -> per-frame clipped mean (ADU), frames used
    image_std: list[float]  # per frame used: robust std of the raw image area (ADU)
    ron: dict[str, float]  # region -> read noise (ADU); NaN with fewer than 2 frames
    frames_used: int
    saturated: int  # pixels at the ADC ceiling, over the frames used
    lost: int  # pixels at 0
    left_out: list[str] = field(default_factory=list)  # frames left out, each with why
    master: QuadrantMaster | None = None  # its planes of the FPA master bias (meta step)
    master_error: str | None = None  # why the master planes could not be written


def fpa_bias_unit(frames: Sequence[tuple[Path, LE1Extension]], geometry: CCDGeometry,
                  vstart: int = 0, vend: int | None = None,
                  master: LE1StackTarget | None = None) -> FPAQuadrantResult:
    """Worker: one quadrant of every LE1 frame (path, the extension's index entry), read once for
    the per-frame statistics and once, band by band, for the read noise and (`master` given) the
    quadrant's planes of the FPA master bias. A master that cannot be written (a full disk) is
    said in `master_error`; the numbers are measured all the same."""
    extname = frames[0][1].name
    letter = frames[0][1].place.quadrant
    rows = window_rows(geometry, vstart, vend)
    master_result: QuadrantMaster | None = None
    master_error: str | None = None
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
        offsets = [s.prescan.clipped_mean for s in stats]
        noise = NoiseAccumulator(n, offsets, geometry, letter) if n >= 2 else None
        writer: LE1StackWriter | None = None
        if master is not None:
            try:
                if n == 0:  # every extension of the LE1 layout is written: this one unknown
                    writer = LE1StackWriter(stack.enter_context(LE1Quadrant(*frames[0], geometry)), [], geometry,
                                            master)
                    writer.fill_nan()
                else:
                    writer = LE1StackWriter(views[0], offsets, geometry, master)
            except (ValueError, OSError) as exc:
                master_error = f"{extname}: master planes not written ({getattr(exc, 'strerror', None) or exc})"
        try:
            if n and (noise is not None or writer is not None):
                _banded_pass(views, geometry, letter, noise, writer)
            if writer is not None:
                try:
                    master_result = writer.finish(quadrant_read_noise([s.prescan.std for s in stats]))
                except OSError as exc:  # compressing (a full disk): the numbers stand, the master does not
                    writer.discard()
                    master_error = f"{extname}: master planes not written ({getattr(exc, 'strerror', None) or exc})"
        except BaseException:  # a failed or stopped unit leaves no plane behind
            if writer is not None:
                writer.discard()
            raise
        ron = dict(noise.result().ron) if noise is not None else {r: math.nan for r in REGIONS}
    return FPAQuadrantResult(
        extname=extname,
        levels={r: [getattr(s, r).clipped_mean for s in stats] for r in REGIONS},
        image_std=[s.image.std for s in stats],
        ron=ron,
        frames_used=n,
        saturated=sum(s.saturated for s in stats),
        lost=sum(s.lost for s in stats),
        left_out=left_out,
        master=master_result,
        master_error=master_error,
    )


def _banded_pass(views: Sequence[LE1Quadrant], geometry: CCDGeometry, letter: str,
                 noise: NoiseAccumulator | None, writer: LE1StackWriter | None) -> None:
    """The frames' quadrant walked in row bands (frame orientation, as the block's pass reads a
    CCD frame), each band read once into one cube and fed to the compiled pass: the noise
    histograms over the image rows, the median and spread over every row (parallel overscan too)."""
    n = len(views)
    band_rows = band_rows_for(n, geometry)
    cube = np.empty((n, band_rows, geometry.quad_width), np.uint16)  # kept band after band
    total = np.empty((band_rows, geometry.quad_width), np.int64)
    planes = np.empty((2, band_rows, geometry.quad_width), np.float32) if writer is not None else None
    used = np.arange(n, dtype=np.int64)
    for band in quadrant_bands(geometry, letter, band_rows):
        if writer is None and band.image_rows == 0:
            continue  # parallel overscan: not part of the region statistics
        height = band.frame_rows.stop - band.frame_rows.start
        sections = cube[:, :height]
        for k, view in enumerate(views):
            sections[k] = view.section(band.frame_rows, band.cols)
        noise_rows = noise.image_band_rows(band) if noise is not None else (0, 0)
        fuse_band(sections, used, noise=noise, noise_rows=noise_rows, total=total[:height], stack=writer,
                  planes=planes[:, :height] if planes is not None else None)
        if writer is not None and planes is not None:
            writer.put(band, planes[0, :height], planes[1, :height])


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
    if result.master is not None:
        values["master_bias_std_adu"] = result.master.level.std
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
