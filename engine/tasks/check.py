"""The checks every test runs on its raw data, each flag with the reason a user can act on.

- structure: exposures found against the catalogue's frames (MISSDATA);
- files: every logged frame on disk and readable (MISSDATA);
- configuration: serials against the campaign, logged parameters against the script (MISSDATA,
  with the key, the logged and the scripted value, so a wrong serial reads differently from a
  missing frame);
- HK against limits (HK_OOL, with key, reading, limit, OBSID);
- offsets, read noise, saturation and lost pixels per CCD and quadrant (POORQUALDATA, RON_OOL,
  SATURATION, LOSTPIXELS).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..campaign.script_params import log_values
from ..formats.fits import FrameError
from ..formats.geometry import QUADRANTS
from ..formats.hk import read_hk
from .context import TaskContext
from .measures import QuadrantStats, frame_stats

# Logged parameters compared with the script; the others vary by design or are not commanded.
COMPARED_KEYS = (
    "exptime", "rdmode", "vstart", "vend", "chinj", "chinj_on", "chinj_of", "id_wid", "id_dly", "toi_ch",
    "toi_tp", "toi_ro", "v_tpump", "s_tpump", "v_tp_mod", "s_tp_mod", "v_tp_cnt", "s_tp_cnt", "dwell_v",
    "dwell_s", "IDL", "IDH", "IG2_T", "IG2_B", "RD_T", "RD_B", "wave", "mirr_on", "mirr_pos", "source",
    *(f"IG1_{n}_{h}" for n in (1, 2, 3) for h in "TB"),
)
SERIAL_KEYS = ("sn_ccd1", "sn_ccd2", "sn_ccd3", "sn_roe", "sn_rpsu")
RELATIVE_TOLERANCE = 0.005


def generic_check(ctx: TaskContext) -> None:
    check_structure(ctx)
    check_configuration(ctx)
    check_hk(ctx)
    stats = measure_frames(ctx)
    ctx.scratch["raw_stats"] = stats
    check_readout(ctx, stats)


# -- structure and files -----------------------------------------------------------------------

def check_structure(ctx: TaskContext) -> None:
    ds = ctx.dataset
    found, expected = len(ds.exposures), ds.expected_frames
    if found < expected:
        span = f" (OBSIDs {ds.obsid_range[0]}-{ds.obsid_range[1]})" if ds.obsid_range else ""
        ctx.flags.raise_flag("MISSDATA", f"{found} of {expected} exposures of {ds.test} in the EXP_LOG{span}: "
                                         f"test incomplete or OBSID limits too narrow")
    elif found > expected:
        ctx.flags.raise_flag("MISSDATA", f"{found} exposures of {ds.test} within the OBSID limits, its "
                                         f"structure has {expected}: limits include another attempt?")
    for exposure in ds.exposures:
        for ccd in ctx.ccds:
            frame = exposure.frames.get(ccd)
            if frame is None:
                ctx.flags.raise_flag("MISSDATA", "no EXP_LOG row for this CCD", ccd=ccd, obsid=exposure.obsid)
            elif not frame.path.is_file():
                ctx.flags.raise_flag("MISSDATA", f"frame file {frame.path.name} is not in {frame.path.parent}",
                                     ccd=ccd, obsid=exposure.obsid)


def check_configuration(ctx: TaskContext) -> None:
    """Serials against the campaign; logged parameters against the script of their column."""
    wanted = ctx.campaign.hardware.serials()
    columns = [log_values(c) for c in ctx.test.script_columns(ctx.chamber)]
    differences: dict[str, list[str]] = defaultdict(list)
    for exposure in ctx.dataset.exposures:
        row = exposure.row
        for key, value in wanted.items():
            if str(row.get(key, "")).strip() != value:
                differences[f"serial {key}"].append(
                    f"OBSID {exposure.obsid}: data say {row.get(key)!r}, the campaign says {value!r}")
        if exposure.column < 0:
            continue
        script = columns[exposure.column]
        for key in COMPARED_KEYS:
            if key in row and row[key] not in (None, "") and not _same(row[key], script.get(key)):
                differences[key].append(f"OBSID {exposure.obsid}: EXP_LOG {row[key]!r}, script column "
                                        f"{exposure.column + 1} {script.get(key)!r}")
    for key, cases in differences.items():
        more = f" (and {len(cases) - 1} more exposures)" if len(cases) > 1 else ""
        ctx.flags.raise_flag("MISSDATA", f"{key} differs from the expected configuration: {cases[0]}{more}")


def _same(logged: Any, scripted: Any) -> bool:
    if isinstance(scripted, (int, float)) and not isinstance(scripted, bool):
        try:
            return math.isclose(float(logged), float(scripted), rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-6)
        except (TypeError, ValueError):
            return False
    return str(logged).strip() == str(scripted).strip()


# -- HK ----------------------------------------------------------------------------------------

def check_hk(ctx: TaskContext) -> None:
    missing = []
    for exposure in ctx.dataset.exposures:
        path = ctx.dataset.hk_path(exposure)
        if path is None:
            missing.append(exposure.obsid)
            continue
        hk = read_hk(path)
        for problem in hk.problems:
            ctx.log.warning(str(problem))
        for verdict in ctx.hk_limits.check_file(hk, exposure.row):
            if verdict.status != "ok":
                ctx.flags.raise_flag("HK_OOL", f"[{verdict.status}] {verdict.reason}", obsid=exposure.obsid)
    if missing:
        ctx.log.warning(f"no HK file for OBSIDs {_ranges(missing)}: HK not checked there")
        ctx.test_values["hk_missing_obsids"] = missing


# -- raw frames --------------------------------------------------------------------------------

def measure_frames(ctx: TaskContext) -> dict[tuple[int, int], dict[str, QuadrantStats]]:
    """(obsid, ccd) -> per-quadrant stats, over the rows each frame's window read."""
    windows = {ccd: [(f.obsid, f.row.get("vstart"), f.row.get("vend")) for f in ctx.dataset.frames(ccd)]
               for ccd in ctx.ccds}
    results = ctx.map_ccds(_measure_ccd, windows)
    stats: dict[tuple[int, int], dict[str, QuadrantStats]] = {}
    for ccd, per_obsid in results.items():
        for obsid, value in per_obsid.items():
            if isinstance(value, str):
                ctx.flags.raise_flag("MISSDATA", value, ccd=ccd, obsid=obsid)
            else:
                stats[(obsid, ccd)] = value
    return stats


def _measure_ccd(ccd: int, paths: list[Path], windows: dict[int, list[tuple[int, Any, Any]]]) -> dict[int, Any]:
    # Runs in a worker: paths in, small records out. An unreadable frame becomes its message.
    out: dict[int, Any] = {}
    for (obsid, vstart, vend), path in zip(windows[ccd], paths):
        if not path.is_file():
            continue
        try:
            out[obsid] = frame_stats(path, int(vstart or 0), int(vend) if vend not in (None, "") else None)
        except FrameError as exc:
            out[obsid] = f"unreadable frame: {exc}"
    return out


def check_readout(ctx: TaskContext, stats: Mapping[tuple[int, int], Mapping[str, QuadrantStats]]) -> None:
    """Offsets, RON, saturation and lost pixels per CCD and quadrant; values kept for results."""
    if not stats:
        return
    margin = float(ctx.limit("offset_margin_adu"))
    ron_lo, ron_hi = ctx.limit("ron_adu")
    saturation_limit = float(ctx.limit("saturation_fraction"))
    nominal = ctx.campaign.limits.get("offset_nominal_adu")
    for ccd in ctx.ccds:
        for q in QUADRANTS:
            per_frame = [(obsid, s[q]) for (obsid, c), s in sorted(stats.items()) if c == ccd]
            if not per_frame:
                continue
            prescan = np.array([s.prescan.median for _, s in per_frame])
            overscan = np.array([s.overscan.median for _, s in per_frame])
            ron_pre = float(np.nanmedian([s.prescan.std for _, s in per_frame]))
            ron_ove = float(np.nanmedian([s.overscan.std for _, s in per_frame]))
            offset = float(np.nanmedian(prescan))
            ctx.set_value(ccd, q, "offset_prescan_adu", round(offset, 3))
            ctx.set_value(ccd, q, "offset_overscan_adu", round(float(np.nanmedian(overscan)), 3))
            ctx.set_value(ccd, q, "ron_prescan_adu", round(ron_pre, 4))
            ctx.set_value(ccd, q, "ron_overscan_adu", round(ron_ove, 4))
            reference = float(nominal) if nominal is not None else offset
            for (obsid, _), value in zip(per_frame, prescan):
                if not abs(value - reference) <= margin:
                    what = "the campaign's nominal" if nominal is not None else "this test's median"
                    ctx.flags.raise_flag("POORQUALDATA", f"prescan offset {value:.1f} ADU is more than {margin:g} ADU "
                                         f"from {what} {reference:.1f} ADU", ccd=ccd, quadrant=q, obsid=obsid)
            for region, ron in (("prescan", ron_pre), ("overscan", ron_ove)):
                if not ron_lo <= ron <= ron_hi:
                    ctx.flags.raise_flag("RON_OOL", f"{region} RON {ron:.3f} ADU outside [{ron_lo}, {ron_hi}] ADU",
                                         ccd=ccd, quadrant=q)
            for obsid, s in per_frame:
                pixels = ctx_quadrant_pixels(ctx)
                if s.saturated / pixels > saturation_limit and ctx.test.family != "persist":
                    ctx.flags.raise_flag("SATURATION", f"{100 * s.saturated / pixels:.1f} % of pixels saturated "
                                         f"(limit {100 * saturation_limit:g} %)", ccd=ccd, quadrant=q, obsid=obsid)
                    ctx.flags.raise_flag("POORQUALDATA", "saturated frame", ccd=ccd, quadrant=q, obsid=obsid)
                if s.lost:
                    ctx.flags.raise_flag("LOSTPIXELS", f"{s.lost} pixels read 0 ADU", ccd=ccd, quadrant=q, obsid=obsid)
    if nominal is None:
        ctx.log.info("no nominal offsets in the campaign ([limits] offset_nominal_adu): offsets checked for "
                     "stability within the test only")


def ctx_quadrant_pixels(ctx: TaskContext) -> int:
    geometry = ctx.scratch.get("geometry")
    if geometry is None:
        from ..formats.fits import read_frame

        first = next((f.path for e in ctx.dataset.exposures for f in e.frames.values() if f.path.is_file()), None)
        if first is None:
            return 1
        with read_frame(first) as frame:
            geometry = frame.geometry
        ctx.scratch["geometry"] = geometry
    return geometry.quad_width * geometry.image_rows


def _ranges(numbers: list[int]) -> str:
    numbers = sorted(numbers)
    spans, start, previous = [], numbers[0], numbers[0]
    for n in numbers[1:]:
        if n != previous + 1:
            spans.append((start, previous))
            start = n
        previous = n
    spans.append((start, previous))
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)
