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
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.geometry import QUADRANTS
from .base import TaskOutcome
from .check import check_offset_gradients, quadrant_frames
from .context import TaskContext
from .figures import markdown_table, quadrant_axes, save_figure
from .offsets import OffsetSubtractingTask, prepared_data
from .stacking import StackStats, build_stacks, product_names
from .stats import CLIP_SIGMA

DARK_FLUENCE_WINDOW_ADU = (-2.0, 5.0)  # vison's DARK01 check window (image minus offsets, ADU)
HOT_PIXEL_THRESHOLD_ADU = 50.0  # above the quadrant's dark level in the median stack
WORK_FOLDER = ".work"  # inside the task's staging folder: stacks waiting for `meta`


class DarkTask(OffsetSubtractingTask):
    family = "dark"

    def run(self, ctx: TaskContext, enabled: set[str]) -> TaskOutcome:
        try:
            return super().run(ctx, enabled)
        finally:  # a stack `meta` did not publish (switched off or crashed) is not a result
            shutil.rmtree(ctx.workdir / WORK_FOLDER, ignore_errors=True)

    def check_data(self, ctx: TaskContext) -> None:
        check_offset_gradients(ctx, ("overscan",))
        check_fluence(ctx)

    def basic(self, ctx: TaskContext) -> None:
        names = product_names(ctx, "MASTERDARK")
        work = ctx.workdir / WORK_FOLDER
        work.mkdir(parents=True, exist_ok=True)
        files = {ccd: work / name for ccd, name in names.items()}
        stats = stack_darks(ctx, files)
        ctx.scratch["pending_masters"] = files
        record_dark(ctx, stats)

    def meta(self, ctx: TaskContext) -> None:
        names = product_names(ctx, "MASTERDARK")
        pending: dict[int, Path] = ctx.scratch.get("pending_masters") or {}
        with ExitStack() as stack:
            # entered last to first so they are published (and listed) CCD1 first
            targets = {ccd: stack.enter_context(ctx.product(name)) for ccd, name in reversed(names.items())}
            if pending and all(path.is_file() for path in pending.values()):
                for ccd, path in pending.items():
                    path.replace(targets[ccd])
            else:  # `basic` was switched off: stack here, and measure from the same pass
                record_dark(ctx, stack_darks(ctx, targets))
        ncomb = ", ".join(f"CCD{ccd} {len(prepared_data(ctx).frames[ccd])}" for ccd in names)
        ctx.add_section("Master dark", (
            f"Per CCD the per-pixel median of the offset-subtracted frames ({ncomb}), ADU per exposure: "
            "extension DARK; EDARK = per-pixel std over the frames / sqrt(NCOMB). Provenance in the primary "
            "header (VISON, TEST, SESSION, BLOCK, CCD, SN, OBSIDS, NCOMB, METHOD, OFFS_E..H, EXPTIME, GAIN_E..H, "
            "DATE, inputs as HISTORY).\n\n" + "\n".join(f"- `products/{name}`" for name in names.values())))


TASK = DarkTask


# ---------------------------------------------------------------------------------------------

def check_fluence(ctx: TaskContext) -> None:
    """Image median minus the mean of prescan and overscan medians, per frame; the CCD/quadrant
    value is the median over frames and must lie in the window (FLUENCE_OOL)."""
    low, high = DARK_FLUENCE_WINDOW_ADU
    for ccd, q, frames in quadrant_frames(ctx):
        per_frame = [(obsid, s.image.median - 0.5 * (s.prescan.median + s.overscan.median)) for obsid, s in frames]
        value = float(np.median([f for _, f in per_frame]))
        ctx.set_value(ccd, q, "fluence_adu", round(value, 3))
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


def stack_darks(ctx: TaskContext, files: dict[int, Path]) -> dict[tuple[int, str], StackStats]:
    prepared = prepared_data(ctx)

    def header(ccd: int) -> dict[str, Any]:
        extra: dict[str, Any] = {"EXPTIME": (exposure_time(ctx, ccd), "exposure time of the frames (s)")}
        for q in QUADRANTS:
            extra[f"GAIN_{q}"] = (ctx.gain(ccd, q)[0], f"gain used for quadrant {q} (e-/ADU)")
        extra["HOTTHR"] = (HOT_PIXEL_THRESHOLD_ADU, "hot pixel: ADU above the quadrant's level")
        return extra

    return build_stacks(ctx, prepared, files, "MASTERDARK", ("DARK", "EDARK"), "error",
                        "median of offset-subtracted frames", HOT_PIXEL_THRESHOLD_ADU, header)


def record_dark(ctx: TaskContext, stats: dict[tuple[int, str], StackStats]) -> None:
    """Dark current, hot pixels: values, hot-pixel table, figure and report section."""
    rows, hot_lines, sources = [], [], set()
    exptimes = {}
    for (ccd, q), result in sorted(stats.items()):
        exptime = exptimes.setdefault(ccd, exposure_time(ctx, ccd))
        gain, source = ctx.gain(ccd, q)
        sources.add(source)
        signal = result.level.mean
        rate = signal * gain / (exptime / 3600.0) if exptime > 0 else math.nan
        ctx.set_value(ccd, q, "dark_signal_adu", round(signal, 4))
        ctx.set_value(ccd, q, "dark_e_per_pix_per_hour", round(rate, 4))
        ctx.set_value(ccd, q, "hot_pixels", result.hot_count)
        ctx.set_value(ccd, q, "gain_e_per_adu_used", gain)
        rows.append([f"CCD{ccd}", q, f"{signal:.3f}", f"{rate:.3f}", str(result.hot_count)])
        hot_lines += [f"CCD{ccd},{q},{r},{c},{excess:.2f},{excess * gain / exptime if exptime > 0 else math.nan:.4f}\n"
                      for r, c, excess in result.hot]
    ctx.test_values["exptime_s"] = sorted(set(exptimes.values()))
    ctx.test_values["gain_source"] = "; ".join(sorted(sources))
    ctx.test_values["hot_pixel_threshold_adu"] = HOT_PIXEL_THRESHOLD_ADU
    ctx.test_values["dark_method"] = ("clipped mean over the image pixels of the per-pixel median of the "
                                      "offset-subtracted frames, x gain / exptime")
    name = f"{ctx.test.name}_hot_pixels.csv"
    with ctx.product(name) as tmp:
        tmp.write_text("ccd,quadrant,row,col,excess_adu,rate_e_per_s\n" + "".join(hot_lines))
    plot_dark(ctx, stats)
    seconds = ", ".join(f"{t:g}" for t in sorted(set(exptimes.values())))
    ctx.add_section("Dark current and hot pixels", "\n\n".join([
        f"Dark signal: clipped ({CLIP_SIGMA:g}-sigma) mean of the image pixels of the per-pixel median of "
        f"the offset-subtracted frames, ADU per exposure of {seconds} s; dark current = signal x gain / "
        f"exposure time. Hot pixels: more than {HOT_PIXEL_THRESHOLD_ADU:g} ADU above the quadrant's level in "
        f"the median stack; listed in `products/{name}` (canonical row, column).",
        markdown_table(["CCD", "Q", "signal (ADU)", "dark (e-/pix/h)", "hot pixels"], rows),
        f"Gain used: {'; '.join(sorted(sources))}.",
    ]))


def plot_dark(ctx: TaskContext, stats: dict[tuple[int, str], StackStats]) -> None:
    keys = sorted(stats)
    if not keys:
        return
    figure, axes, x = quadrant_axes(keys)
    rates = [ctx.value(c, q, "dark_e_per_pix_per_hour") for c, q in keys]
    bars = axes.bar(x, rates, color="tab:purple")
    for bar, key in zip(bars, keys):
        axes.annotate(f"{stats[key].hot_count} hot", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=7)
    axes.set_ylabel("dark current (e-/pix/h)")
    axes.set_title(f"{ctx.test.name}: dark current per quadrant, hot pixel counts above the bars")
    save_figure(ctx, figure, "dark")
