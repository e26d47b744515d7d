"""DARK01: dark current per quadrant (e-/pix/h), hot pixels, master dark.

Sub-tasks (after the generic `init` and `check`):

- `check` (family part): the image "fluence" of each raw frame, image median minus the mean of
  the prescan and overscan medians, must lie in DARK_FLUENCE_WINDOW_ADU (FLUENCE_OOL otherwise);
  medians make it blind to hot pixels and cosmic rays. Overscan minus prescan offset within the
  campaign's `offset_gradient_adu` (POORQUALDATA).
- `prep` (offsets.py): per frame and quadrant offsets (clipped prescan mean), as for the biases.
- `basic`: the per-pixel median of the offset-subtracted frames (cosmic rays and other one-frame
  events drop out), then per quadrant the clipped mean of its image pixels (hot pixels drop out):
  the dark signal in ADU per exposure, times the gain, divided by the exposure time in hours.
  Hot pixels: image pixels of the median stack more than HOT_PIXEL_THRESHOLD_ADU above their
  quadrant's dark level (vison's DARK01 defect limit, 50 ADU in 565 s: about 0.3 e-/s).
  The stack is written band by band as the master dark; `meta` publishes it.
- `meta`: the master dark per CCD (DARK = median stack, EDARK = per-pixel std / sqrt(NCOMB),
  ADU per exposure, offset-subtracted) with its provenance header (stacking.py, as the master bias).

The offset subtracted is the prescan's: an image-minus-prescan offset difference would add to
the dark signal (the check's gradient limit bounds it); a master bias is not subtracted yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.geometry import QUADRANTS
from .check import RawStats, check_offset_gradients, quadrant_frames
from .context import TaskContext
from .family import BandConsumers, Family, StackSpec, ValueSpec
from .figures import markdown_table, quadrant_axes
from .measures import QuadrantStats
from .offsets import OffsetSubtractingTask, PreparedData
from .outputs import CsvTable, Outputs, Plot, Section, StagedFile, SubTaskResult
from .stacking import PRECISION_NOTE, StackStats, build_stacks, product_names
from .stats import CLIP_SIGMA

DARK_FLUENCE_WINDOW_ADU = (-2.0, 5.0)  # vison's DARK01 check window (image minus offsets, ADU)
HOT_PIXEL_THRESHOLD_ADU = 50.0  # above the quadrant's dark level in the median stack
# stacked in the one pass over the frames (bandpass.py) when `basic` or `meta` will run
MASTER_DARK = StackSpec("MASTERDARK", ("DARK", "EDARK"), "error", HOT_PIXEL_THRESHOLD_ADU, subtasks=("basic", "meta"))


@dataclass
class DarkStacks(SubTaskResult):
    """`basic`: the master darks built in the staging area (published by `meta`), their statistics."""

    files: dict[int, Path]  # ccd -> staged master dark
    names: dict[int, str]  # ccd -> product file name
    stats: dict[tuple[int, str], StackStats]


@dataclass
class MasterDark(SubTaskResult):
    """`meta`: the published master darks."""

    names: dict[int, str]


class DarkTask(OffsetSubtractingTask):
    def basic(self, ctx: TaskContext, prepared: PreparedData) -> DarkStacks:
        names = product_names(ctx, prepared, "MASTERDARK")
        files = {ccd: ctx.staging_path(name) for ccd, name in names.items()}
        stats = stack_darks(ctx, prepared, files)
        return DarkStacks(files, names, stats, outputs=dark_outputs(ctx, stats))

    def meta(self, ctx: TaskContext, prepared: PreparedData, stacks: DarkStacks | None = None) -> MasterDark:
        if stacks is None:  # `basic` was switched off: stack here, and measure from the same pass
            stacks = self.basic(ctx, prepared)
            out = stacks.outputs
        else:
            out = Outputs()
        out.files += [StagedFile(stacks.names[ccd], stacks.files[ccd]) for ccd in stacks.names]
        ncomb = ", ".join(f"CCD{ccd} {len(prepared.frames[ccd])}" for ccd in stacks.names)
        out.sections.append(Section("Master dark", (
            f"Per CCD the per-pixel median of the offset-subtracted frames ({ncomb}), ADU per exposure: "
            "extension DARK; EDARK = per-pixel std over the frames / sqrt(NCOMB). Provenance in the primary "
            "header (VISON, TEST, SESSION, BLOCK, CCD, SN, OBSIDS, NCOMB, METHOD, OFFS_E..H, EXPTIME, GAIN_E..H, "
            "DATE, inputs as HISTORY). " + PRECISION_NOTE.format(median="DARK", spread="EDARK") + "\n\n"
            + "\n".join(f"- `products/{name}`" for name in stacks.names.values()))))
        return MasterDark(stacks.names, outputs=out)


def check_dark_gradients(ctx: TaskContext, stats: RawStats) -> None:
    """Overscan offset against the prescan's (POORQUALDATA)."""
    check_offset_gradients(ctx, stats, ("overscan",))




# ---------------------------------------------------------------------------------------------

def frame_fluence_adu(stats: QuadrantStats) -> float:
    """A raw dark frame's image level above its offsets: image median minus the mean of the
    prescan and overscan medians (medians: blind to hot pixels and cosmic rays)."""
    return stats.image.median - 0.5 * (stats.prescan.median + stats.overscan.median)


def dark_rate_e_per_pix_per_hour(signal_adu: float, gain: float, exptime_s: float) -> float:
    """Dark current from the dark signal per exposure (ADU): x gain / exposure time in hours."""
    return signal_adu * gain / (exptime_s / 3600.0) if exptime_s > 0 else math.nan


def check_fluence(ctx: TaskContext, stats: RawStats) -> None:
    """Image median minus the mean of prescan and overscan medians, per frame; the CCD/quadrant
    value is the median over frames and must lie in the window (FLUENCE_OOL)."""
    low, high = DARK_FLUENCE_WINDOW_ADU
    for ccd, q, frames in quadrant_frames(ctx, stats):
        per_frame = [(obsid, frame_fluence_adu(s)) for obsid, s in frames]
        value = float(np.median([f for _, f in per_frame]))
        ctx.set_value(ccd, q, "fluence_adu", value)
        if not low <= value <= high:
            obsid, worst = max(per_frame, key=lambda item: abs(item[1]))
            ctx.flags.raise_flag("FLUENCE_OOL", f"dark image level {value:+.2f} ADU above the offsets (median of "
                                 f"{len(per_frame)} frames; most extreme {worst:+.2f} at OBSID {obsid}) outside "
                                 f"[{low:g}, {high:g}] ADU", ccd=ccd, quadrant=q)


def exposure_time(ctx: TaskContext, ccd: int) -> float:
    """The frames' logged exposure time (s); the median if they differ (said in the log)."""
    times = [float(f.row.get("exptime") or 0.0) for f in ctx.dataset.frames(ccd)]
    value = float(np.median(times)) if times else 0.0
    if times and max(times) - min(times) > 0.01 * max(value, 1.0):
        ctx.log.warning(f"CCD{ccd} frames of {ctx.test.name} have exposure times {sorted(set(times))} s; "
                        f"using {value} s")
    return value


def stack_darks(ctx: TaskContext, prepared: PreparedData, files: dict[int, Path]) -> dict[tuple[int, str], StackStats]:

    def header(ccd: int) -> dict[str, Any]:
        extra: dict[str, Any] = {"EXPTIME": (exposure_time(ctx, ccd), "exposure time of the frames (s)")}
        for q in QUADRANTS:
            extra[f"GAIN_{q}"] = (ctx.gain(ccd, q)[0], f"gain used for quadrant {q} (e-/ADU)")
        extra["HOTTHR"] = (HOT_PIXEL_THRESHOLD_ADU, "hot pixel: ADU above the quadrant's level")
        return extra

    return build_stacks(ctx, prepared, files, MASTER_DARK.kind, MASTER_DARK.extnames, MASTER_DARK.spread,
                        "median of offset-subtracted frames", MASTER_DARK.hot_threshold_adu, header)


def dark_outputs(ctx: TaskContext, stats: dict[tuple[int, str], StackStats]) -> Outputs:
    """Dark current, hot pixels: values, hot-pixel table, figure and report section."""
    out = Outputs()
    rows, hot_rows, sources = [], [], set()
    exptimes: dict[int, float] = {}
    rates: dict[tuple[int, str], float] = {}
    for (ccd, q), result in sorted(stats.items()):
        exptime = exptimes.setdefault(ccd, exposure_time(ctx, ccd))
        gain, source = ctx.gain(ccd, q)
        sources.add(source)
        signal = result.level.mean
        rate = dark_rate_e_per_pix_per_hour(signal, gain, exptime)
        rates[(ccd, q)] = rate
        out.value("dark_signal_adu", signal, ccd, q)
        out.value("dark_e_per_pix_per_hour", rate, ccd, q)
        out.value("hot_pixels", result.hot_count, ccd, q)
        out.value("gain_e_per_adu_used", gain, ccd, q)
        rows.append([f"CCD{ccd}", q, f"{signal:.3f}", f"{rate:.3f}", str(result.hot_count)])
        hot_rows += [(f"CCD{ccd}", q, r, c, f"{excess:.2f}",
                      f"{excess * gain / exptime if exptime > 0 else math.nan:.4f}") for r, c, excess in result.hot]
    out.value("exptime_s", sorted(set(exptimes.values())))
    out.value("gain_source", "; ".join(sorted(sources)))
    out.value("hot_pixel_threshold_adu", HOT_PIXEL_THRESHOLD_ADU)
    out.value("dark_method", "clipped mean over the image pixels of the per-pixel median of the "
                             "offset-subtracted frames, x gain / exptime")
    name = f"{ctx.test.name}_hot_pixels.csv"
    out.tables.append(CsvTable(name, ("ccd", "quadrant", "row", "col", "excess_adu", "rate_e_per_s"), hot_rows))
    test = ctx.test.name
    out.plots.append(Plot("dark", lambda: dark_figure(test, stats, rates)))
    seconds = ", ".join(f"{t:g}" for t in sorted(set(exptimes.values())))
    out.sections.append(Section("Dark current and hot pixels", "\n\n".join([
        f"Dark signal: clipped ({CLIP_SIGMA:g}-sigma) mean of the image pixels of the per-pixel median of "
        f"the offset-subtracted frames, ADU per exposure of {seconds} s; dark current = signal x gain / "
        f"exposure time. Hot pixels: more than {HOT_PIXEL_THRESHOLD_ADU:g} ADU above the quadrant's level in "
        f"the median stack; listed in `products/{name}` (canonical row, column).",
        markdown_table(["CCD", "Q", "signal (ADU)", "dark (e-/pix/h)", "hot pixels"], rows),
        f"Gain used: {'; '.join(sorted(sources))}.",
    ])))
    return out


def dark_figure(test: str, stats: dict[tuple[int, str], StackStats], rates: dict[tuple[int, str], float]):
    keys = sorted(stats)
    if not keys:
        return None
    figure, axes, x = quadrant_axes(keys)
    bars = axes.bar(x, [rates[k] for k in keys], color="tab:purple")
    for bar, key in zip(bars, keys):
        axes.annotate(f"{stats[key].hot_count} hot", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=7)
    axes.set_ylabel("dark current (e-/pix/h)")
    axes.set_title(f"{test}: dark current per quadrant, hot pixel counts above the bars")
    return figure


FAMILY = Family(
    name="dark",
    summary="dark current per quadrant (e-/pix/h), hot pixels, master dark",
    subtasks=("init", "check", "prep", "basic", "meta", "report"),
    task=DarkTask,
    values=(
        ValueSpec("fluence_adu", "ADU", 3, "raw image median minus the offsets, median over frames (check)"),
        ValueSpec("dark_signal_adu", "ADU", 4, "dark signal per exposure: clipped mean of the median stack"),
        ValueSpec("dark_e_per_pix_per_hour", "e-/pix/h", 4, "dark current (signal x gain / exposure time)", key=True),
        ValueSpec("hot_pixels", "", None, f"pixels more than {HOT_PIXEL_THRESHOLD_ADU:g} ADU above the level"),
        ValueSpec("gain_e_per_adu_used", "e-/ADU", None, "gain used for the dark current"),
        ValueSpec("exptime_s", "s", None, "exposure times of the frames", scope="test"),
        ValueSpec("gain_source", "", None, "where the gain came from", scope="test"),
        ValueSpec("hot_pixel_threshold_adu", "ADU", None, "hot-pixel threshold above the level", scope="test"),
        ValueSpec("dark_method", "", None, "how the dark current was measured", scope="test"),
    ),
    checks=(check_dark_gradients, check_fluence),
    needs=("gain",),
    required=("gain",),
    per_band=BandConsumers(stack=MASTER_DARK),
    fits_products=True,
)
TASK = DarkTask
