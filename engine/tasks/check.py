"""The checks every test runs on its raw data, each flag with the reason a user can act on.

- structure: exposures found against the catalogue's frames (MISSDATA);
- files: every logged frame on disk and readable (MISSDATA);
- configuration: serials against the campaign, logged parameters against the script (MISSDATA,
  with the key, the logged and the scripted value, so a wrong serial reads differently from a
  missing frame);
- HK against limits (HK_OOL, with key, reading, limit, OBSID);
- offsets, read noise, saturation and lost pixels per CCD and quadrant (POORQUALDATA, RON_OOL,
  SATURATION, LOSTPIXELS), from the statistics of each frame (measures.py), returned as
  `RawStats` for the checks a family adds (such as `check_offset_gradients`). A family whose
  frames are meant to saturate (Family.saturation_expected) gets no SATURATION flag.
"""

from __future__ import annotations

import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..campaign.script_params import log_values
from ..formats.geometry import QUADRANTS
from ..formats.hk import read_hk
from .context import TaskContext
from .dataset import obsid_ranges
from .measures import FrameStats, QuadrantStats, measure_frames

# Logged parameters compared with the script; the others vary by design or are not commanded.
COMPARED_KEYS = (
    "exptime", "rdmode", "vstart", "vend", "chinj", "chinj_on", "chinj_of", "id_wid", "id_dly", "toi_ch",
    "toi_tp", "toi_ro", "v_tpump", "s_tpump", "v_tp_mod", "s_tp_mod", "v_tp_cnt", "s_tp_cnt", "dwell_v",
    "dwell_s", "IDL", "IDH", "IG2_T", "IG2_B", "RD_T", "RD_B", "wave", "mirr_on", "mirr_pos", "source",
    *(f"IG1_{n}_{h}" for n in (1, 2, 3) for h in "TB"),
)
SERIAL_KEYS = ("sn_ccd1", "sn_ccd2", "sn_ccd3", "sn_roe", "sn_rpsu")
RELATIVE_TOLERANCE = 0.005


@dataclass(frozen=True)
class RawStats:
    """What the check measured: (obsid, ccd) -> statistics of each readable frame."""

    by_frame: dict[tuple[int, int], FrameStats] = field(default_factory=dict)


def generic_check(ctx: TaskContext) -> RawStats:
    check_structure(ctx)
    check_configuration(ctx)
    # the HK files are read here while the workers measure the frames (this process only waits
    # for them then); what each says is reported afterwards, in exposure order, as before
    with ThreadPoolExecutor(1, thread_name_prefix="vison-hk") as reader:
        hk_reports = reader.submit(read_hk_reports, ctx)
        measure_frames(ctx)
        reports = hk_reports.result()
    report_hk(ctx, reports)
    stats = RawStats(raw_stats(ctx))
    check_readout(ctx, stats.by_frame)
    return stats


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

@dataclass(frozen=True)
class HkReport:
    """What one exposure's HK file says: its reading problems, why it cannot be checked, verdicts."""

    obsid: int
    problems: tuple[str, ...] = ()
    unreadable: str = ""  # MISSDATA reason: the file cannot be read or holds no table
    out_of_limits: tuple[str, ...] = ()  # HK_OOL reasons


def read_hk_reports(ctx: TaskContext) -> tuple[list[HkReport], list[int]]:
    """Each exposure's HK report, and the OBSIDs without an HK file. Reads only: safe in a thread."""
    reports, missing = [], []
    for exposure in ctx.dataset.exposures:
        path = ctx.dataset.hk_path(exposure)
        if path is None:
            missing.append(exposure.obsid)
            continue
        try:
            hk = read_hk(path)
        except (OSError, ValueError) as exc:  # a folder, denied, gone: this exposure's HK only
            reports.append(HkReport(exposure.obsid, unreadable=(
                f"HK file {path.name} cannot be read ({getattr(exc, 'strerror', None) or exc}): "
                "HK not checked for this exposure")))
            continue
        problems = tuple(str(problem) for problem in hk.problems)
        if not hk.keys or not len(hk):  # empty, binary, or no sample: nothing to check it against
            why = str(hk.problems[0].message) if hk.problems else "no HK sample in it"
            reports.append(HkReport(exposure.obsid, problems, unreadable=(
                f"HK file {path.name} holds no HK table ({why}): HK not checked for this exposure")))
            continue
        verdicts = ctx.hk_limits.check_file(hk, exposure.row)
        reports.append(HkReport(exposure.obsid, problems, out_of_limits=tuple(
            f"[{v.status}] {v.reason}" for v in verdicts if v.status != "ok")))
    return reports, missing


def report_hk(ctx: TaskContext, read: tuple[list[HkReport], list[int]]) -> None:
    reports, missing = read
    for report in reports:
        for problem in report.problems:
            ctx.log.warning(problem)
        if report.unreadable:
            ctx.flags.raise_flag("MISSDATA", report.unreadable, obsid=report.obsid)
        for reason in report.out_of_limits:
            ctx.flags.raise_flag("HK_OOL", reason, obsid=report.obsid)
    if missing:
        ctx.log.warning(f"no HK file for OBSIDs {obsid_ranges(missing)}: HK not checked there")
        ctx.set_value(None, None, "hk_missing_obsids", missing)


# -- raw frames ---------------------------------------------------------------------------------

def raw_stats(ctx: TaskContext) -> dict[tuple[int, int], FrameStats]:
    """(obsid, ccd) -> statistics of each usable frame (measures.py); the others flagged, named and
    left out: unreadable ones MISSDATA, those all saturated or zero POORQUALDATA."""
    stats: dict[tuple[int, int], FrameStats] = {}
    for (obsid, ccd), value in measure_frames(ctx).items():
        if isinstance(value, str):
            ctx.flags.raise_flag(getattr(value, "flag", "MISSDATA"), value, ccd=ccd, obsid=obsid)
        else:
            stats[(obsid, ccd)] = value
    return stats


def quadrant_frames(ctx: TaskContext, stats: RawStats | Mapping[tuple[int, int], Mapping[str, QuadrantStats]],
                    ) -> Iterator[tuple[int, str, list[tuple[int, QuadrantStats]]]]:
    """(ccd, quadrant, [(obsid, its statistics)] in OBSID order) for each quadrant with measured frames."""
    if isinstance(stats, RawStats):
        stats = stats.by_frame
    for ccd in ctx.ccds:
        frames = [(obsid, s) for (obsid, c), s in sorted(stats.items()) if c == ccd]
        if frames:
            for q in QUADRANTS:
                yield ccd, q, [(obsid, s[q]) for obsid, s in frames]


def check_readout(ctx: TaskContext, stats: Mapping[tuple[int, int], FrameStats]) -> None:
    """Offsets, RON, saturation and lost pixels per CCD and quadrant; values kept for results."""
    if not stats:
        return
    margin = float(ctx.limits.offset_margin_adu)
    ron_lo, ron_hi = ctx.limits.ron_adu
    saturation_limit = float(ctx.limits.saturation_fraction)
    without_nominal = []
    quadrant_pixels = {key: s.geometry.quad_width * s.geometry.image_rows for key, s in stats.items()}
    for ccd, q, per_frame in quadrant_frames(ctx, stats):
        prescan = np.array([s.prescan.median for _, s in per_frame])
        overscan = np.array([s.overscan.median for _, s in per_frame])
        ron_pre = float(np.nanmedian([s.prescan.std for _, s in per_frame]))
        ron_ove = float(np.nanmedian([s.overscan.std for _, s in per_frame]))
        offset = float(np.nanmedian(prescan))
        ctx.set_value(ccd, q, "offset_prescan_adu", offset)
        ctx.set_value(ccd, q, "offset_overscan_adu", float(np.nanmedian(overscan)))
        ctx.set_value(ccd, q, "ron_prescan_adu", ron_pre)
        ctx.set_value(ccd, q, "ron_overscan_adu", ron_ove)
        nominal = ctx.campaign.nominal_offset(ccd, q)
        if nominal is None:
            without_nominal.append(f"CCD{ccd}{q}")
        reference = nominal if nominal is not None else offset
        for (obsid, _), value in zip(per_frame, prescan):
            if not abs(value - reference) <= margin:
                what = "the block's nominal" if nominal is not None else "this test's median"
                ctx.flags.raise_flag("POORQUALDATA", f"prescan offset {value:.1f} ADU is more than {margin:g} ADU "
                                     f"from {what} {reference:.1f} ADU", ccd=ccd, quadrant=q, obsid=obsid)
        for region, ron in (("prescan", ron_pre), ("overscan", ron_ove)):
            if region not in ctx.family.noise_regions:
                continue
            if not ron_lo <= ron <= ron_hi:
                ctx.flags.raise_flag("RON_OOL", f"{region} RON {ron:.3f} ADU outside [{ron_lo}, {ron_hi}] ADU",
                                     ccd=ccd, quadrant=q)
        for obsid, s in per_frame:
            pixels = quadrant_pixels[(obsid, ccd)]
            if s.saturated / pixels > saturation_limit and not ctx.family.saturation_expected:
                ctx.flags.raise_flag("SATURATION", f"{100 * s.saturated / pixels:.1f} % of pixels saturated "
                                     f"(limit {100 * saturation_limit:g} %)", ccd=ccd, quadrant=q, obsid=obsid)
                ctx.flags.raise_flag("POORQUALDATA", "saturated frame", ccd=ccd, quadrant=q, obsid=obsid)
            if s.lost:
                ctx.flags.raise_flag("LOSTPIXELS", f"{s.lost} pixels read 0 ADU", ccd=ccd, quadrant=q, obsid=obsid)
    if without_nominal:
        ctx.log.info(f"no nominal offset in the campaign ([offsets] or [limits] offset_nominal_adu) for "
                     f"{', '.join(without_nominal)}: those offsets checked for stability within the test only")


# -- checks the families add (from the same raw statistics) --------------------------------------

def check_offset_gradients(ctx: TaskContext, stats: RawStats, regions: Sequence[str]) -> None:
    """Region offset minus prescan offset, per frame, within `offset_gradient_adu` (POORQUALDATA)."""
    low, high = ctx.limits.offset_gradient_adu
    for ccd, q, frames in quadrant_frames(ctx, stats):
        for region in regions:
            deltas = [(obsid, getattr(s, region).median - s.prescan.median) for obsid, s in frames]
            bad = [(obsid, d) for obsid, d in deltas if not low <= d <= high]
            if bad:
                obsid, worst = max(bad, key=lambda item: abs(item[1]))
                ctx.flags.raise_flag(
                    "POORQUALDATA", f"{region} minus prescan offset {worst:+.1f} ADU outside [{low:g}, {high:g}] "
                    f"ADU (OBSID {obsid}; {len(bad)} of {len(deltas)} frames out)", ccd=ccd, quadrant=q)
