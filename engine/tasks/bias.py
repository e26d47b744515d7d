"""BIAS01 and BIAS02: offsets and read noise per quadrant, row/column profiles, master bias.

Sub-tasks (after the generic `init` and `check`):

- `prep` (offsets.py): per frame and quadrant, the offset = mean of the 5-sigma clipped prescan,
  from the raw-frame measurements the check made (each frame's clipped means of its prescan,
  image and overscan). Later sub-tasks subtract them.
- `basic`: offsets in prescan, image and overscan (those clipped means averaged over frames,
  ~0.01 ADU over 10 frames), and one pass per CCD quadrant over row bands of all its frames (each
  frame opened once) that accumulates exact integer histograms of each frame's residuals to the
  per-pixel mean of the frames: the read noise (RON), so fixed pattern (hot pixels, structure)
  does not inflate it; the RON in electrons with the gain; mean row and column profiles of the
  image area (CSV).
- `meta`: the master bias per CCD, the per-pixel median of the offset-subtracted frames
  (stacking.py: band by band, written straight into the FITS file, memory bounded whatever the
  frame count); extensions STACK and STD, provenance in the primary header.

Work is split per (CCD, quadrant): 12 equal units keep 2 workers busy (3 CCDs would leave one
idle a third of the time). Workers get paths and offsets, return small records, and write their
quadrant of a product themselves.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..formats.fits import read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .check import check_offset_gradients, quadrant_frames
from .context import TaskContext
from .figures import markdown_table, new_figure, quadrant_axes, save_figure
from .measures import REGIONS, region_columns
from .offsets import OffsetSubtractingTask, PreparedData, prepared_data
from .stacking import band_rows_for, build_stacks, product_names, quadrant_bands
from .stats import CLIP_SIGMA, histogram_stats

RESIDUAL_RANGE_ADU = 64  # residuals to the per-pixel mean beyond this are outliers (RON ~1-2 ADU)

Levels = dict[tuple[int, str], dict[str, list[float]]]  # (ccd, quadrant) -> region -> per-frame clipped mean


# ---------------------------------------------------------------------------------------------
# basic: offsets from the raw-frame measurements; RON and profiles per quadrant in one banded pass
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuadrantNoise:
    ron: dict[str, float]  # region -> RON (ADU) from the residuals to the per-pixel mean
    row_profile: list[float]  # canonical image rows: mean offset-subtracted level (ADU)
    col_profile: list[float]  # canonical image columns


def noise_unit(unit: tuple[int, str], paths: list[Path], offsets: list[float], geometry: CCDGeometry) -> QuadrantNoise:
    """Worker: one quadrant of every frame of a CCD, band by band, each frame opened once.

    Read noise: each frame minus the per-pixel mean of all frames removes every fixed pattern;
    the residuals are kept exactly as integers, n * x_i - sum_j x_j, in one histogram per frame
    and region (per frame, so an offset drift between frames does not count as noise).
    """
    _, quadrant = unit
    n = len(paths)
    columns = {region: region_columns(geometry, region) for region in REGIONS}
    image_cols = region_columns(geometry, "image", trim=False)
    reach = RESIDUAL_RANGE_ADU * n  # residual histogram half-width, in units of 1/n ADU
    residual_hist = {r: np.zeros((n, 2 * reach + 1), np.int64) for r in REGIONS}
    row_sum = np.zeros(geometry.image_rows)
    col_sum = np.zeros(geometry.image_cols)
    with ExitStack() as stack:
        frames = [stack.enter_context(read_frame(p)) for p in paths]
        for band in quadrant_bands(geometry, quadrant, band_rows_for(n, geometry)):
            if band.image_rows == 0:
                continue  # parallel overscan: not part of the region statistics
            # Columns first: each region is then one contiguous block, histogrammed without copies.
            cube = np.empty((n, geometry.quad_width, band.image_rows), np.int32)
            for i, frame in enumerate(frames):
                counts = geometry.to_canonical(frame.section(band.frame_rows, band.cols), quadrant)
                cube[i] = counts[: band.image_rows].T
            total = cube.sum(axis=0, dtype=np.int32)  # exact below 32768 frames; int32 halves the traffic
            residual = np.empty_like(total)
            for i in range(n):
                np.multiply(cube[i], n, out=residual)
                residual -= total
                np.clip(residual, -reach, reach, out=residual)
                residual += reach
                for region, cols in columns.items():
                    residual_hist[region][i] += np.bincount(residual[cols].ravel(), minlength=2 * reach + 1)
            image = total[image_cols].astype(np.float64) - float(np.sum(offsets))
            canonical = slice(band.canonical_rows.start, band.canonical_rows.start + band.image_rows)
            row_sum[canonical] += image.sum(axis=0)
            col_sum += image.sum(axis=1)
    ron = {}
    for region in REGIONS:
        # std(n x_i - sum) = n sigma sqrt((n-1)/n)
        variances = [histogram_stats(h, -reach).std ** 2 for h in residual_hist[region]]
        ron[region] = math.sqrt(float(np.nanmean(variances)) / (n * (n - 1))) if n > 1 else math.nan
    return QuadrantNoise(
        ron=ron,
        row_profile=(row_sum / (n * geometry.image_cols)).tolist(),
        col_profile=(col_sum / (n * geometry.image_rows)).tolist(),
    )


def frame_levels(prepared: PreparedData, units: list[tuple[int, str]]) -> Levels:
    """Per unit and region, each frame's clipped mean (from the raw-frame measurements)."""
    return {(ccd, q): {r: [f.level(q, r) for f in prepared.frames[ccd]] for r in REGIONS} for ccd, q in units}


# ---------------------------------------------------------------------------------------------
# Checks on raw statistics (from the generic check's measurements)
# ---------------------------------------------------------------------------------------------

def check_image_noise(ctx: TaskContext) -> None:
    """Std of the raw image area (median over frames) within the RON limits (RON_OOL)."""
    low, high = ctx.limit("ron_adu")
    for ccd, q, frames in quadrant_frames(ctx):
        value = float(np.nanmedian([s.image.std for _, s in frames]))
        ctx.set_value(ccd, q, "std_image_raw_adu", round(value, 4))
        if not low <= value <= high:
            ctx.flags.raise_flag("RON_OOL", f"image-area std {value:.3f} ADU (median over {len(frames)} frames) "
                                 f"outside [{low:g}, {high:g}] ADU", ccd=ccd, quadrant=q)


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

class BiasTask(OffsetSubtractingTask):
    family = "bias"

    def check_data(self, ctx: TaskContext) -> None:
        check_offset_gradients(ctx, ("image", "overscan"))
        check_image_noise(ctx)

    def basic(self, ctx: TaskContext) -> None:
        prepared = prepared_data(ctx)
        geometry = prepared.geometry
        units = [(ccd, q) for ccd in ctx.ccds for q in QUADRANTS if len(prepared.frames[ccd]) >= 2]
        calls = [((ccd, q), [f.path for f in prepared.frames[ccd]], [f.offsets[q] for f in prepared.frames[ccd]],
                  geometry) for ccd, q in units]
        noise = dict(zip(units, ctx.map_units(noise_unit, calls)))
        levels = frame_levels(prepared, units)
        sources = set()
        for (ccd, q), result in noise.items():
            gain, source = ctx.gain(ccd, q)
            sources.add(source)
            for region in REGIONS:
                ctx.set_value(ccd, q, f"offset_{region}_adu", round(float(np.mean(levels[(ccd, q)][region])), 4))
                ctx.set_value(ccd, q, f"ron_{region}_adu", round(result.ron[region], 4))
                ctx.set_value(ccd, q, f"ron_{region}_e", round(result.ron[region] * gain, 3))
            ctx.set_value(ccd, q, "gain_e_per_adu_used", gain)
        ctx.test_values["gain_source"] = "; ".join(sorted(sources))
        ctx.test_values["ron_method"] = ("std of each frame minus the per-pixel mean of the frames, "
                                         f"{CLIP_SIGMA:g}-sigma clipped, pooled over frames, x sqrt(n/(n-1))")
        ctx.test_values["offset_method"] = (f"mean of {CLIP_SIGMA:g}-sigma clipped pixels per frame, "
                                            "averaged over frames")
        ctx.scratch["noise"] = noise
        write_profiles(ctx, noise)
        obsids = {ccd: [f.obsid for f in prepared.frames[ccd]] for ccd in ctx.ccds}
        plot_ron(ctx, noise)
        plot_offsets(ctx, levels, obsids)
        ctx.add_section("Offsets and read noise", noise_tables(ctx, noise, levels, sources))

    def meta(self, ctx: TaskContext) -> None:
        prepared = prepared_data(ctx)
        names = product_names(ctx, "MASTERBIAS")
        ccds = list(names)
        with ExitStack() as stack:
            # entered last to first so they are published (and listed) CCD1 first
            files = {ccd: stack.enter_context(ctx.product(names[ccd])) for ccd in reversed(ccds)}
            stats = build_stacks(ctx, prepared, files, "MASTERBIAS", ("STACK", "STD"), "std",
                                 "median of offset-subtracted frames")
        rows = []
        for (ccd, q), result in sorted(stats.items()):
            ctx.set_value(ccd, q, "master_bias_std_adu", round(result.level.std, 4))
            rows.append([f"CCD{ccd}", q, f"{result.level.mean:+.3f}", f"{result.level.std:.3f}"])
        counts = ", ".join(f"CCD{c} {len(prepared.frames[c])}" for c in ccds)
        body = (f"Per CCD, the per-pixel median of its offset-subtracted frames ({counts}; offset: clipped "
                "prescan mean per frame and quadrant), with the per-pixel std of the frames (extension STD). "
                "Provenance in the primary header (VISON, TEST, SESSION, BLOCK, CCD, SN, OBSIDS, NCOMB, METHOD, "
                "OFFS_E..H, DATE, inputs as HISTORY). STACK + OFFS_q is the quadrant's bias level.\n\n"
                + "\n".join(f"- `products/{names[c]}`" for c in ccds) + "\n\n"
                + markdown_table(["CCD", "Q", "image clipped mean (ADU)", "clipped std (ADU)"], rows))
        ctx.add_section("Master bias", body)


TASK = BiasTask


# ---------------------------------------------------------------------------------------------
# Products, figures and report tables
# ---------------------------------------------------------------------------------------------

def write_profiles(ctx: TaskContext, noise: dict[tuple[int, str], QuadrantNoise]) -> None:
    """Mean row and column profiles of the image area, long format, canonical coordinates."""
    name = f"{ctx.test.name}_profiles.csv"
    with ctx.product(name) as tmp:
        with open(tmp, "w") as out:
            out.write("ccd,quadrant,axis,index,mean_adu\n")
            for (ccd, q), result in sorted(noise.items()):
                for axis, profile in (("row", result.row_profile), ("column", result.col_profile)):
                    out.writelines(f"CCD{ccd},{q},{axis},{i},{v:.4f}\n" for i, v in enumerate(profile))
    ctx.add_section("Profiles", f"`products/{name}`: mean offset-subtracted level of the image area per canonical "
                    "row (averaged over image columns and frames) and per canonical column (over image rows and "
                    "frames); canonical = output node at row 0, column 0; columns count from the image's first.")


def noise_tables(ctx: TaskContext, noise: dict[tuple[int, str], QuadrantNoise], levels: Levels,
                 sources: set[str]) -> str:
    offset_rows, ron_rows = [], []
    for (ccd, q), result in sorted(noise.items()):
        means = {r: float(np.mean(levels[(ccd, q)][r])) for r in REGIONS}
        offset_rows.append([f"CCD{ccd}", q, *(f"{means[r]:.2f}" for r in REGIONS),
                            f"{means['image'] - means['prescan']:+.2f}",
                            f"{means['overscan'] - means['prescan']:+.2f}"])
        gain = ctx.value(ccd, q, "gain_e_per_adu_used")
        ron_rows.append([f"CCD{ccd}", q, *(f"{result.ron[r]:.3f}" for r in REGIONS),
                         f"{result.ron['prescan'] * gain:.2f}", f"{result.ron['image'] * gain:.2f}"])
    low, high = ctx.limit("ron_adu")
    return "\n\n".join([
        "Offsets: mean of the 5-sigma clipped pixels of each frame, averaged over frames (ADU). "
        "Read noise: std of each frame minus the per-pixel mean of all frames (clipped, pooled over "
        "frames, x sqrt(n/(n-1))): fixed pattern cancels.",
        markdown_table(["CCD", "Q", "prescan", "image", "overscan", "image-pre", "overscan-pre"], offset_rows),
        f"Read noise (ADU; limits [{low:g}, {high:g}]) and in electrons:",
        markdown_table(["CCD", "Q", "RON pre", "RON img", "RON ove", "RON pre (e-)", "RON img (e-)"], ron_rows),
        f"Gain used: {'; '.join(sorted(sources))}.",
    ])


def plot_ron(ctx: TaskContext, noise: dict[tuple[int, str], QuadrantNoise]) -> None:
    keys = sorted(noise)
    if not keys:
        return
    figure, axes, x = quadrant_axes(keys)
    for offset, region in zip((-0.27, 0, 0.27), REGIONS):
        axes.bar(x + offset, [noise[k].ron[region] for k in keys], width=0.27, label=region)
    low, high = ctx.limit("ron_adu")
    for limit in (low, high):
        axes.axhline(limit, color="k", linestyle=":", linewidth=1)
    finite = [noise[k].ron[r] for k in keys for r in REGIONS if math.isfinite(noise[k].ron[r])]
    axes.set_ylim(0, max([high, *finite]) * 1.12)
    axes.set_ylabel("RON (ADU)")
    axes.set_title(f"{ctx.test.name}: read noise per quadrant (dotted: limits)")
    axes.legend(fontsize=8, ncol=3, loc="lower right")
    save_figure(ctx, figure, "ron")


def plot_offsets(ctx: TaskContext, levels: Levels, obsids: dict[int, list[int]]) -> None:
    ccds = sorted({ccd for ccd, _ in levels})
    if not ccds:
        return
    figure = new_figure(9, 2.4 * len(ccds))
    for index, ccd in enumerate(ccds, start=1):
        axes = figure.add_subplot(len(ccds), 1, index)
        for q in QUADRANTS:
            if (ccd, q) not in levels:
                continue
            values = np.array(levels[(ccd, q)]["prescan"])
            axes.plot(obsids[ccd], values - values.mean(), marker="o", markersize=3,
                      label=f"{q} ({values.mean():.1f})")
        axes.set_ylabel(f"CCD{ccd} Δoffset (ADU)")
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.set_xlabel("OBSID")
    figure.suptitle(f"{ctx.test.name}: prescan offset minus its mean over the test (mean in legend)", fontsize=10)
    save_figure(ctx, figure, "offsets")
