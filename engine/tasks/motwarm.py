"""MOT_WARM: warm readiness checks before cool-down (offsets, RON, injection and flat frames, image bits).

Sub-tasks (after the generic `init` and `check`):

- `basic`: the frames are told apart by what the EXP_LOG says was commanded (readout mode,
  injection, source), not by their position. Per CCD and quadrant, five checks, each with
  pass/fail (or n/a) and its reason:
  - `offset`: prescan and overscan offsets of the BIAS_RV frame within `offset_margin_adu` of the
    block's nominal (campaign [offsets] or [limits]); without a nominal, the bias frames' offsets
    agree within the margin; overscan minus prescan within `offset_gradient_adu`;
  - `ron`: prescan, image and overscan noise of the BIAS_RVS frame within `ron_adu`;
  - `injection`: the injected lines of the CHINJ frame (quadrants of the half its drain timing
    injects) against the predicted injection (chinj_lib.py, with the CHINJ limits);
  - `flat`: the FLAT frame's image level above the offset against the level its exposure time
    gives (chamber time to full well), within `flat_level_tolerance`;
  - `bits`: over the bias, RAMP and FLAT frames, each ADC bit is set in half the image pixels
    where the pixel values spread wide enough to toggle it (`bit_fraction_tolerance`); a
    quadrant whose images do not spread at all fails.
  The spreads, bit fractions and injected lines are measured in the check's read of the frames
  (Family.per_quadrant: LookConsumer, the judged frames' quadrants as they are read); where that
  read did not see a judged frame with its offsets, look_unit reads it again (the same
  functions, the same numbers), saying why.
  Failures raise POORQUALDATA (offsets, bits), RON_OOL, FLUENCE_OOL (injection, flat), and
  DEADQUAD for a quadrant that responds neither to light nor to injection.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..campaign.limits import GenericLimits, limit
from ..formats.fits import FrameError, read_frame
from ..formats.geometry import HALF_OF_QUADRANT, QUADRANTS
from .base import AnalysisTask
from .chinj_lib import InjectedLines, extract_lines, injected_half, injection_window
from .context import TaskContext
from .family import Family, QuadrantConsumers, ValueSpec
from .figures import markdown_table
from .flat_lib import FULL_WELL_ADU
from .measures import FrameMeasures, FrameStats, measure_frames
from .outputs import CsvTable, Outputs, Section, SubTaskResult

CHECKS = ("offset", "ron", "injection", "flat", "bits")
PASS, FAIL, NOT_APPLICABLE = "pass", "fail", "n/a"
ADC_BITS = 16
# A bit of period 2^(b+1) ADU is set in half the pixels of a smooth distribution of std sigma to
# within exp(-2 pi^2 sigma^2 / 4^(b+1)): below 2 % when sigma >= 0.45 x 2^(b+1).
BIT_SPREAD_FACTOR = 0.45
FLAG_OF_CHECK = {"offset": "POORQUALDATA", "ron": "RON_OOL", "injection": "FLUENCE_OOL", "flat": "FLUENCE_OOL",
                 "bits": "POORQUALDATA"}


@dataclass(frozen=True)
class WarmLimits(GenericLimits):
    injection_tolerance: float = limit(0.5, "fraction", "relative tolerance of the injection level vs predicted")
    injection_margin_v: float = limit(0.5, "V", "gate-voltage margin over which the predicted injection is taken")
    injection_gradient_fraction: float = limit(0.45, "fraction", "largest std of the injected pixels "
                                               "relative to the largest predicted injection")
    flat_level_tolerance: float = limit(0.5, "fraction", "relative tolerance of the flat level vs its exposure time")
    bit_fraction_tolerance: float = limit(0.1, "fraction", "largest deviation from 0.5 of the fraction of "
                                          "pixels with an ADC bit set")


# ---------------------------------------------------------------------------------------------
# Which frame is which
# ---------------------------------------------------------------------------------------------

def frame_kind(row: Mapping[str, Any]) -> str:
    """BIAS_RVS, BIAS_RV, RAMP, CHINJ, FLAT, POINT or OTHER, from the logged commands."""
    def num(name: str) -> float:
        try:
            return float(row.get(name) or 0.0)
        except (TypeError, ValueError):
            return 0.0

    source = str(row.get("source", "")).strip().lower()
    if int(num("chinj")):
        return "CHINJ"
    if num("exptime") > 0:
        return "FLAT" if source == "flat" else "POINT" if source == "point" else "OTHER"
    mode = str(row.get("rdmode", "")).strip().lower()
    return {"rwd_bas_vs": "BIAS_RVS", "rwd_bas_v": "BIAS_RV", "fwd_bas": "RAMP"}.get(mode, "OTHER")


# ---------------------------------------------------------------------------------------------
# One pass over a frame: bit fractions and spread, injected lines
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuadrantLook:
    sigma_adu: float  # robust std of the image pixels
    bit_fractions: tuple[float, ...]  # per ADC bit, fraction of image pixels with it set
    injection: InjectedLines | None


def bit_fractions(values: np.ndarray) -> tuple[float, ...]:
    counts = np.bincount(values.ravel(), minlength=65536)
    total = counts.sum()
    codes = np.arange(counts.size)
    return tuple(float(counts[((codes >> b) & 1) == 1].sum() / total) if total else math.nan for b in range(ADC_BITS))


def testable_bits(sigma_adu: float) -> list[int]:
    if not math.isfinite(sigma_adu) or sigma_adu <= 0:
        return []
    return [b for b in range(ADC_BITS) if 2 ** (b + 1) * BIT_SPREAD_FACTOR <= sigma_adu]


def quadrant_look(image: np.ndarray, kind: str, offset: float, on: int, off: int) -> QuadrantLook:
    """Spread and bit fractions of a quadrant's canonical image area (uint16), and for an
    injection frame its injected lines."""
    q25, q75 = np.percentile(image, [25, 75])
    sigma = float((q75 - q25) / 1.349)
    injection = None
    if kind == "CHINJ":
        injection = extract_lines(image.astype(np.float32) - np.float32(offset), on, off)
    return QuadrantLook(sigma, bit_fractions(image), injection)


def look_unit(path: Path, kind: str, offsets: dict[str, float], on: int, off: int) -> dict[str, QuadrantLook] | str:
    """Worker: one frame opened once; per quadrant its quadrant_look."""
    try:
        with read_frame(path) as frame:
            geometry = frame.geometry
            cols = slice(geometry.prescan, geometry.prescan + geometry.image_cols)
            return {q: quadrant_look(frame.quadrant(q, geometry=geometry)[: geometry.image_rows, cols], kind,
                                     offsets[q], on, off) for q in QUADRANTS}
    except FrameError as exc:
        return f"unreadable frame: {exc}"


# ---------------------------------------------------------------------------------------------
# The same from the check's read (Family.per_quadrant, quadrant_pass.py)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Judged:
    """A frame judged by `basic`: its kind and injection pattern (lines on, off)."""

    kind: str
    on: int
    off: int


def judged_frames(ctx: TaskContext, ccd: int) -> dict[int, Judged]:
    """OBSID -> the frames `basic` judges: the first of each kind in the data set."""
    judged: dict[int, Judged] = {}
    seen = set()
    for ref in ctx.dataset.frames(ccd):
        kind = frame_kind(ref.row)
        if kind in seen or kind in ("POINT", "OTHER"):
            continue
        seen.add(kind)
        judged[ref.obsid] = Judged(kind, int(_num(ref.row, "chinj_on")), int(_num(ref.row, "chinj_of")))
    return judged


def look_plan(ctx: TaskContext, ccd: int, frames: list[Any]) -> tuple[Judged | None, ...]:
    judged = judged_frames(ctx, ccd)
    return tuple(judged.get(f.obsid) for f in frames)


class LookConsumer:
    """The looks of one quadrant of the judged frames (a few numbers and the injected lines'
    statistics each) as the check reads them; nothing of a frame is kept."""

    def __init__(self, quadrant: str, geometry: Any, plan: tuple[Judged | None, ...]):
        self.quadrant, self.geometry, self.plan = quadrant, geometry, plan
        self.cols = slice(geometry.prescan, geometry.prescan + geometry.image_cols)
        self.looks: dict[int, QuadrantLook] = {}

    def add(self, index: int, counts: np.ndarray, stats: Any) -> None:
        judged = self.plan[index]
        if judged is None:
            return
        image = self.geometry.to_canonical(counts, self.quadrant)[: self.geometry.image_rows, self.cols]
        self.looks[index] = quadrant_look(image, judged.kind, stats.prescan.clipped_mean, judged.on, judged.off)

    def result(self) -> dict[int, QuadrantLook]:
        return self.looks


def start_look(quadrant: str, geometry: Any, plan: tuple[Judged | None, ...]) -> LookConsumer:
    return LookConsumer(quadrant, geometry, plan)


def look_from_read(readouts: dict, ccd: int, path: Path, offsets: dict[str, float]) -> tuple[dict[str, QuadrantLook] | None, str]:
    """The frame's looks from the check's read if every quadrant's consumer measured it with
    these offsets, else (None, why)."""
    found = {}
    for q in QUADRANTS:
        readout = readouts.get((ccd, q))
        if readout is None:
            return None, "the check's read made no looks (check switched off or `basic` run alone)"
        if readout.error or readout.result is None:
            return None, f"its looks failed ({readout.error or 'no frame fed'})"
        index = next((i for i, p in zip(readout.fed, readout.paths) if p == path), None)
        if index not in readout.result or not readout.matches([path], [offsets[q]]):
            return None, "it did not measure the frame with these offsets"
        found[q] = readout.result[index]
    return found, ""


# ---------------------------------------------------------------------------------------------
# The checks, each (status, reason, value)
# ---------------------------------------------------------------------------------------------

@dataclass
class Verdict:
    status: str
    reason: str
    value: float = math.nan


@dataclass
class WarmFrame:
    obsid: int
    kind: str
    row: Mapping[str, Any]
    stats: FrameStats | None
    look: dict[str, QuadrantLook] = field(default_factory=dict)


def offset_verdict(ctx: TaskContext, ccd: int, q: str, frames: dict[str, WarmFrame]) -> Verdict:
    rv = frames.get("BIAS_RV")
    if rv is None or rv.stats is None:
        return Verdict(FAIL, "no BIAS_RV frame to measure the offsets on")
    margin = float(ctx.limits.offset_margin_adu)
    pre, ove = rv.stats[q].prescan.clipped_mean, rv.stats[q].overscan.clipped_mean
    nominal = ctx.campaign.nominal_offset(ccd, q)
    problems = []
    if nominal is not None:
        for region, value in (("prescan", pre), ("overscan", ove)):
            if not abs(value - nominal) <= margin:
                problems.append(f"{region} offset {value:.1f} ADU is {value - nominal:+.1f} ADU from the nominal "
                                f"{nominal:.1f} (margin {margin:g})")
        basis = f"within {margin:g} ADU of the nominal {nominal:.1f} ADU"
    else:
        others = [f.stats[q].prescan.clipped_mean for k, f in frames.items()
                  if k in ("BIAS_RVS", "RAMP") and f.stats is not None]
        for value in others:
            if not abs(value - pre) <= margin:
                problems.append(f"bias frames' prescan offsets differ by {value - pre:+.1f} ADU (margin {margin:g})")
        if not margin < pre < 65535 - margin:
            problems.append(f"prescan offset {pre:.1f} ADU at the edge of the ADC range")
        basis = "no nominal offset in the campaign: bias frames agree"
    low, high = ctx.limits.offset_gradient_adu
    if not low <= ove - pre <= high:
        problems.append(f"overscan minus prescan {ove - pre:+.2f} ADU outside [{low:g}, {high:g}]")
    if problems:
        return Verdict(FAIL, "; ".join(problems), pre)
    return Verdict(PASS, f"prescan {pre:.1f}, overscan {ove:.1f} ADU ({basis})", pre)


def ron_verdict(ctx: TaskContext, q: str, frames: dict[str, WarmFrame]) -> Verdict:
    rvs = frames.get("BIAS_RVS")
    if rvs is None or rvs.stats is None:
        return Verdict(FAIL, "no BIAS_RVS frame to measure the noise on")
    low, high = ctx.limits.ron_adu
    stds = {region: getattr(rvs.stats[q], region).std for region in ("prescan", "image", "overscan")}
    out = [f"{region} {value:.3f} ADU" for region, value in stds.items() if not low <= value <= high]
    if out:
        return Verdict(FAIL, f"noise outside [{low:g}, {high:g}] ADU: " + ", ".join(out), stds["image"])
    return Verdict(PASS, "noise " + ", ".join(f"{r} {v:.3f}" for r, v in stds.items()) + " ADU", stds["image"])


def injection_verdict(ctx: TaskContext, ccd: int, q: str, frames: dict[str, WarmFrame]) -> Verdict:
    chinj = frames.get("CHINJ")
    if chinj is None or q not in chinj.look:
        return Verdict(FAIL, "no readable injection frame")
    row = chinj.row
    half = injected_half(int(_num(row, "chinj")), _num(row, "id_wid"), _num(row, "id_dly"), _num(row, "toi_ch"))
    if half != HALF_OF_QUADRANT[q]:
        return Verdict(NOT_APPLICABLE, "this quadrant's half is not injected by the frame's drain timing")
    h = HALF_OF_QUADRANT[q]
    ig1, ig2, idl = _num(row, f"IG1_{ccd}_{h}"), _num(row, f"IG2_{h}"), _num(row, "IDL")
    window = injection_window(ig1, ig2, idl, ctx.limits.injection_tolerance, ctx.limits.injection_margin_v,
                              ctx.limits.injection_gradient_fraction)
    lines = chinj.look[q].injection
    level = lines.p50 if lines is not None else math.nan
    if not window.low_adu <= level <= window.high_adu:
        return Verdict(FAIL, f"median injection {level:.1f} ADU outside [{window.low_adu:.0f}, {window.high_adu:.0f}] "
                       f"ADU (predicted {window.predicted_adu:.0f} ADU)", level)
    if not lines.std <= window.std_limit_adu:
        return Verdict(FAIL, f"std of the injected pixels {lines.std:.1f} ADU above {window.std_limit_adu:.0f} ADU",
                       level)
    return Verdict(PASS, f"median injection {level:.1f} ADU in [{window.low_adu:.0f}, {window.high_adu:.0f}] ADU", level)


def flat_verdict(ctx: TaskContext, q: str, frames: dict[str, WarmFrame]) -> Verdict:
    flat = frames.get("FLAT")
    if flat is None or flat.stats is None:
        return Verdict(FAIL, "no readable flat frame")
    stats = flat.stats[q]
    level = stats.image.median - stats.prescan.clipped_mean
    expected = expected_flat_adu(ctx, flat.row)
    if expected is None:
        bias = frames.get("BIAS_RV") or frames.get("BIAS_RVS")
        floor = 20.0 * (bias.stats[q].image.std if bias and bias.stats else 1.0)
        if level > floor:
            return Verdict(PASS, f"flat level {level:.1f} ADU (no expected level for this filter; above {floor:.0f})",
                           level)
        return Verdict(FAIL, f"flat level {level:.1f} ADU: no response (expected above {floor:.0f} ADU)", level)
    tolerance = float(ctx.limits.flat_level_tolerance)
    low, high = (1 - tolerance) * expected, (1 + tolerance) * expected
    if not low <= level <= high:
        return Verdict(FAIL, f"flat level {level:.1f} ADU outside [{low:.0f}, {high:.0f}] ADU (expected {expected:.0f} "
                       "ADU from the exposure time)", level)
    return Verdict(PASS, f"flat level {level:.1f} ADU in [{low:.0f}, {high:.0f}] ADU", level)


def expected_flat_adu(ctx: TaskContext, row: Mapping[str, Any]) -> float | None:
    """The flat's level from its exposure time and the chamber's time to full well (vison's
    convention: tFWC_flat is the time a flat takes to reach 2^16 ADU), or None when the chamber
    does not know the filter."""
    try:
        nm = ctx.chamber.wavelength(int(_num(row, "wave")))
        seconds = ctx.chamber.tfwc_flat[nm]
    except (KeyError, ValueError, TypeError):
        return None
    exptime = _num(row, "exptime")
    if not seconds or exptime <= 0:
        return None
    return min(exptime / seconds, 1.0) * FULL_WELL_ADU


def bits_verdict(ctx: TaskContext, q: str, frames: dict[str, WarmFrame]) -> Verdict:
    tolerance = float(ctx.limits.bit_fraction_tolerance)
    looks = [(k, f.look[q]) for k, f in frames.items() if k in ("BIAS_RVS", "BIAS_RV", "RAMP", "FLAT") and q in f.look]
    if not looks:
        return Verdict(FAIL, "no readable bias, RAMP or flat frame")
    tested: dict[int, tuple[str, float]] = {}
    for kind, look in sorted(looks, key=lambda item: -item[1].sigma_adu):  # widest spread first
        for b in testable_bits(look.sigma_adu):
            tested.setdefault(b, (kind, look.bit_fractions[b]))
    if not tested:
        widest = max(look.sigma_adu for _, look in looks)
        return Verdict(FAIL, f"no bit toggles: the images do not spread (widest robust std {widest:.2f} ADU)", 0)
    bad = [f"bit {b} set in {fraction:.3f} of the {kind} pixels" for b, (kind, fraction) in sorted(tested.items())
           if not abs(fraction - 0.5) <= tolerance]
    if bad:
        return Verdict(FAIL, "; ".join(bad) + f" (expected 0.5 +- {tolerance:g})", len(tested))
    return Verdict(PASS, f"bits {min(tested)}-{max(tested)} toggle evenly; higher bits not testable on these frames",
                   len(tested))


def _num(row: Mapping[str, Any], name: str) -> float:
    try:
        return float(row.get(name) or 0.0)
    except (TypeError, ValueError):
        return math.nan


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

@dataclass
class WarmChecks(SubTaskResult):
    verdicts: dict[tuple[int, str], dict[str, Verdict]]


class WarmTask(AnalysisTask):
    def basic(self, ctx: TaskContext) -> WarmChecks:
        measured = measure_frames(ctx)
        readouts = ctx.need(FrameMeasures).readouts
        frames: dict[int, dict[str, WarmFrame]] = {}
        calls, keys, used, not_used = [], [], [], defaultdict(list)
        for ccd in ctx.ccds:
            frames[ccd] = {}
            for ref in ctx.dataset.frames(ccd):
                kind = frame_kind(ref.row)
                stats = measured.get((ref.obsid, ccd))
                stats = stats if isinstance(stats, FrameStats) else None
                if kind in frames[ccd] or kind in ("POINT", "OTHER"):
                    continue  # the first of each kind is the one judged
                frames[ccd][kind] = WarmFrame(ref.obsid, kind, ref.row, stats)
                if stats is not None:
                    offsets = {q: stats[q].prescan.clipped_mean for q in QUADRANTS}
                    look, why = look_from_read(readouts, ccd, ref.path, offsets)
                    if look is not None:
                        frames[ccd][kind].look = look
                        used.append(f"CCD{ccd} {kind}")
                        continue
                    not_used[why].append(f"CCD{ccd} {kind}")
                    calls.append((ref.path, kind, offsets, int(_num(ref.row, "chinj_on")),
                                  int(_num(ref.row, "chinj_of"))))
                    keys.append((ccd, kind))
        if used:
            ctx.log.info(f"basic: {', '.join(used)} from the check's read of the frames")
        for why, which in not_used.items():
            ctx.log.warning(f"basic: {', '.join(which)}: read again: {why}")
        for (ccd, kind), look in zip(keys, ctx.map_units(look_unit, calls)):
            if isinstance(look, str):
                ctx.log.warning(f"CCD{ccd} {kind}: {look}")
            else:
                frames[ccd][kind].look = look
        verdicts: dict[tuple[int, str], dict[str, Verdict]] = {}
        out = Outputs()
        failures, rows = [], []
        for ccd in ctx.ccds:
            for q in QUADRANTS:
                found = frames[ccd]
                judged = {
                    "offset": offset_verdict(ctx, ccd, q, found),
                    "ron": ron_verdict(ctx, q, found),
                    "injection": injection_verdict(ctx, ccd, q, found),
                    "flat": flat_verdict(ctx, q, found),
                    "bits": bits_verdict(ctx, q, found),
                }
                verdicts[(ccd, q)] = judged
                for check, verdict in judged.items():
                    out.value(f"{check}_status", verdict.status, ccd, q)
                    out.value(f"{check}_reason", verdict.reason, ccd, q)
                    rows.append([f"CCD{ccd}", q, check, verdict.status, verdict.reason])
                    if verdict.status == FAIL:
                        failures.append(f"CCD{ccd} {q} {check}: {verdict.reason}")
                        ctx.flags.raise_flag(FLAG_OF_CHECK[check], f"MOT_WARM {check} check: {verdict.reason}",
                                             ccd=ccd, quadrant=q)
                if judged["flat"].status == FAIL and judged["injection"].status != PASS:
                    ctx.flags.raise_flag("DEADQUAD", "no response to light"
                                         + (" nor to injection" if judged["injection"].status == FAIL else ""),
                                         ccd=ccd, quadrant=q)
                out.value("warm_offset_adu", judged["offset"].value, ccd, q)
                out.value("warm_ron_adu", judged["ron"].value, ccd, q)
                out.value("warm_injection_adu", judged["injection"].value, ccd, q)
                out.value("warm_flat_adu", judged["flat"].value, ccd, q)
                out.value("bits_tested", int(judged["bits"].value) if math.isfinite(judged["bits"].value) else 0,
                          ccd, q)
        out.value("warm_ready", FAIL if failures else PASS)
        out.value("warm_failures", failures)
        out.tables.append(CsvTable(f"{ctx.test.name}_checks.csv", ("ccd", "quadrant", "check", "status", "reason"),
                                   rows))
        kinds = sorted({k for per_ccd in frames.values() for k in per_ccd})
        out.sections.append(Section("Warm readiness", "\n\n".join([
            f"**{'READY' if not failures else 'NOT READY'}**: {len(failures)} failed check(s) of "
            f"{len(verdicts) * len(CHECKS)}. Frames recognised from the logged commands: {', '.join(kinds)}.",
            markdown_table(["CCD", "Q", *CHECKS], [
                [f"CCD{c}", q, *(verdicts[(c, q)][check].status for check in CHECKS)] for c, q in sorted(verdicts)]),
            *(["Failures:\n\n" + "\n".join(f"- {f}" for f in failures)] if failures else []),
            f"Every check with its reason: `products/{ctx.test.name}_checks.csv`.",
        ])))
        return WarmChecks(verdicts, outputs=out)


FAMILY = Family(
    name="motwarm",
    summary="MOT_WARM: warm readiness checks before cool-down (offsets, RON, injection and flat frames, image bits).",
    subtasks=("init", "check", "basic", "report"),
    task=WarmTask,
    limits=WarmLimits,
    per_quadrant=QuadrantConsumers(plan=look_plan, start=start_look, subtasks=("basic",)),
    values=(
        *(ValueSpec(f"{check}_status", "", None, f"{check} check: pass, fail or n/a", key=check != "bits")
          for check in CHECKS),
        *(ValueSpec(f"{check}_reason", "", None, f"{check} check: what was measured against what")
          for check in CHECKS),
        ValueSpec("warm_offset_adu", "ADU", 2, "prescan offset of the BIAS_RV frame"),
        ValueSpec("warm_ron_adu", "ADU", 3, "image-area noise of the BIAS_RVS frame"),
        ValueSpec("warm_injection_adu", "ADU", 1, "median injected level of the CHINJ frame"),
        ValueSpec("warm_flat_adu", "ADU", 1, "FLAT image median above the prescan offset"),
        ValueSpec("bits_tested", "", None, "ADC bits the frames' spread allowed to test"),
        ValueSpec("warm_ready", "", None, "pass when every check passed (n/a counts as passed)", key=True,
                  scope="test"),
        ValueSpec("warm_failures", "", None, "every failed check: CCD, quadrant, check and reason", scope="test"),
    ),
)
TASK = WarmTask
