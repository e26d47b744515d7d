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

The family declares its per-band consumers (FAMILY.per_band: the noise histograms for `basic`, the
master for `meta`): the check measures the frames with one pass over their bands (bandpass.py)
that feeds them from the same read; `basic` and `meta` read the frames again only if their frames
or offsets differ from those the pass used.

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
from .bandpass import RESIDUAL_RANGE_ADU, NoiseAccumulator, QuadrantNoise  # noqa: F401 (re-exported)
from .check import RawStats, check_offset_gradients, quadrant_frames
from .context import TaskContext
from .family import BandConsumers, Family, StackSpec, ValueSpec
from .figures import markdown_table, new_figure, quadrant_axes
from .measures import REGIONS, FrameMeasures
from .offsets import OffsetSubtractingTask, PreparedData
from .outputs import CsvTable, Outputs, Plot, Section, StagedFile, SubTaskResult
from .stacking import (
    PRECISION_NOTE,
    StackStats,
    band_rows_for,
    build_stacks,
    product_names,
    quadrant_bands,
)
from .stats import CLIP_SIGMA

Levels = dict[tuple[int, str], dict[str, list[float]]]  # (ccd, quadrant) -> region -> per-frame clipped mean


# ---------------------------------------------------------------------------------------------
# basic: offsets from the raw-frame measurements; RON and profiles per quadrant in one banded pass
# ---------------------------------------------------------------------------------------------

def noise_unit(unit: tuple[int, str], paths: list[Path], offsets: list[float], geometry: CCDGeometry) -> QuadrantNoise:
    """Worker: one quadrant of every frame of a CCD, band by band, each frame opened once
    (bandpass.NoiseAccumulator). The one pass over the frames (bandpass.py) does the same from
    the check's read; this unit runs when the frames differ from those the pass used."""
    _, quadrant = unit
    noise = NoiseAccumulator(len(paths), offsets, geometry, quadrant)
    with ExitStack() as stack:
        frames = [stack.enter_context(read_frame(p)) for p in paths]
        for band in quadrant_bands(geometry, quadrant, band_rows_for(len(paths), geometry)):
            if band.image_rows == 0:
                continue  # parallel overscan: not part of the region statistics
            noise.add(band, [f.section(band.frame_rows, band.cols) for f in frames])
    return noise.result()


def frame_levels(prepared: PreparedData, units: list[tuple[int, str]]) -> Levels:
    """Per unit and region, each frame's clipped mean (from the raw-frame measurements)."""
    return {(ccd, q): {r: [f.level(q, r) for f in prepared.frames[ccd]] for r in REGIONS} for ccd, q in units}


# ---------------------------------------------------------------------------------------------
# Checks on raw statistics (from the generic check's measurements)
# ---------------------------------------------------------------------------------------------

def check_image_noise(ctx: TaskContext, stats: RawStats) -> None:
    """Std of the raw image area (median over frames) within the RON limits (RON_OOL)."""
    low, high = ctx.limits.ron_adu
    for ccd, q, frames in quadrant_frames(ctx, stats):
        value = float(np.nanmedian([s.image.std for _, s in frames]))
        ctx.set_value(ccd, q, "std_image_raw_adu", value)
        if not low <= value <= high:
            ctx.flags.raise_flag("RON_OOL", f"image-area std {value:.3f} ADU (median over {len(frames)} frames) "
                                 f"outside [{low:g}, {high:g}] ADU", ccd=ccd, quadrant=q)


def check_bias_gradients(ctx: TaskContext, stats: RawStats) -> None:
    """Image and overscan offsets against the prescan's (POORQUALDATA)."""
    check_offset_gradients(ctx, stats, ("image", "overscan"))


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

@dataclass
class BiasNoise(SubTaskResult):
    """`basic`: read noise and profiles per (CCD, quadrant)."""

    noise: dict[tuple[int, str], QuadrantNoise]


@dataclass
class MasterBias(SubTaskResult):
    """`meta`: statistics of each quadrant of the master biases."""

    stats: dict[tuple[int, str], StackStats]


MASTER_BIAS = StackSpec("MASTERBIAS", ("STACK", "STD"), "std", subtasks=("meta",))


class BiasTask(OffsetSubtractingTask):
    def basic(self, ctx: TaskContext, prepared: PreparedData) -> BiasNoise:
        geometry = prepared.geometry
        units = [(ccd, q) for ccd in ctx.ccds for q in QUADRANTS if len(prepared.frames[ccd]) >= 2]
        passes = ctx.need(FrameMeasures).passes
        noise, calls = {}, []
        for ccd, q in units:
            paths, offsets = [f.path for f in prepared.frames[ccd]], [f.offsets[q] for f in prepared.frames[ccd]]
            done = passes.get((ccd, q))
            if done is not None and done.noise is not None and done.matches(paths, offsets):
                noise[(ccd, q)] = done.noise  # from the one pass over the frames (bandpass.py)
            else:
                calls.append(((ccd, q), paths, offsets, geometry))
        noise.update(zip([call[0] for call in calls], ctx.map_units(noise_unit, calls)))
        noise = {unit: noise[unit] for unit in units}
        levels = frame_levels(prepared, units)
        out = Outputs()
        gains, sources = {}, set()
        for (ccd, q), result in noise.items():
            gain, source = ctx.gain(ccd, q)
            gains[(ccd, q)] = gain
            sources.add(source)
            for region in REGIONS:
                out.value(f"offset_{region}_adu", float(np.mean(levels[(ccd, q)][region])), ccd, q)
                out.value(f"ron_{region}_adu", result.ron[region], ccd, q)
                out.value(f"ron_{region}_e", result.ron[region] * gain, ccd, q)
            out.value("gain_e_per_adu_used", gain, ccd, q)
        out.value("gain_source", "; ".join(sorted(sources)))
        out.value("ron_method", "std of each frame minus the per-pixel mean of the frames, "
                                f"{CLIP_SIGMA:g}-sigma clipped, pooled over frames, x sqrt(n/(n-1))")
        out.value("offset_method", f"mean of {CLIP_SIGMA:g}-sigma clipped pixels per frame, averaged over frames")
        table, section = profiles_table(ctx.test.name, noise)
        out.tables.append(table)
        out.sections.append(section)
        obsids = {ccd: [f.obsid for f in prepared.frames[ccd]] for ccd in ctx.ccds}
        ron_limits = ctx.limits.ron_adu
        out.plots += [Plot("ron", lambda: ron_figure(ctx.test.name, noise, ron_limits)),
                      Plot("offsets", lambda: offsets_figure(ctx.test.name, levels, obsids))]
        out.sections.append(Section("Offsets and read noise", noise_tables(noise, levels, gains, sources, ron_limits)))
        return BiasNoise(noise, outputs=out)

    def meta(self, ctx: TaskContext, prepared: PreparedData) -> MasterBias:
        names = product_names(ctx, prepared, "MASTERBIAS")
        files = {ccd: ctx.staging_path(name) for ccd, name in names.items()}
        stats = build_stacks(ctx, prepared, files, "MASTERBIAS", MASTER_BIAS.extnames, MASTER_BIAS.spread,
                             "median of offset-subtracted frames")
        out = Outputs(files=[StagedFile(names[ccd], files[ccd]) for ccd in names])
        rows = []
        for (ccd, q), result in sorted(stats.items()):
            out.value("master_bias_std_adu", result.level.std, ccd, q)
            rows.append([f"CCD{ccd}", q, f"{result.level.mean:+.3f}", f"{result.level.std:.3f}"])
        counts = ", ".join(f"CCD{c} {len(prepared.frames[c])}" for c in names)
        body = (f"Per CCD, the per-pixel median of its offset-subtracted frames ({counts}; offset: clipped "
                "prescan mean per frame and quadrant), with the per-pixel std of the frames (extension STD). "
                "Provenance in the primary header (VISON, TEST, SESSION, BLOCK, CCD, SN, OBSIDS, NCOMB, METHOD, "
                "OFFS_E..H, DATE, inputs as HISTORY). STACK + OFFS_q is the quadrant's bias level. "
                + PRECISION_NOTE.format(median="STACK", spread="STD") + "\n\n"
                + "\n".join(f"- `products/{names[c]}`" for c in names) + "\n\n"
                + markdown_table(["CCD", "Q", "image clipped mean (ADU)", "clipped std (ADU)"], rows))
        out.sections.append(Section("Master bias", body))
        return MasterBias(stats, outputs=out)


FAMILY = Family(
    name="bias",
    summary="offsets and read noise per quadrant, row/column profiles, master bias",
    subtasks=("init", "check", "prep", "basic", "meta", "report"),
    task=BiasTask,
    values=(
        *(ValueSpec(f"offset_{r}_adu", "ADU", 4, f"{r} offset: {CLIP_SIGMA:g}-sigma clipped mean per frame, "
                    "averaged over frames") for r in REGIONS),
        *(ValueSpec(f"ron_{r}_adu", "ADU", 4, f"{r} read noise: std of each frame minus the per-pixel mean "
                    "of the frames", key=r in ("image", "prescan")) for r in ("image", "prescan", "overscan")),
        *(ValueSpec(f"ron_{r}_e", "e-", 3, f"{r} read noise in electrons (x gain_e_per_adu_used)") for r in REGIONS),
        ValueSpec("gain_e_per_adu_used", "e-/ADU", None, "gain used for the values in electrons"),
        ValueSpec("std_image_raw_adu", "ADU", 4, "std of the raw image area, median over frames (check)"),
        ValueSpec("master_bias_std_adu", "ADU", 4, "clipped std of the master bias image area"),
        ValueSpec("gain_source", "", None, "where the gain came from", scope="test"),
        ValueSpec("ron_method", "", None, "how the read noise was measured", scope="test"),
        ValueSpec("offset_method", "", None, "how the offsets were measured", scope="test"),
    ),
    checks=(check_bias_gradients, check_image_noise),
    needs=("gain",),
    per_band=BandConsumers(noise=("basic",), stack=MASTER_BIAS),
    fits_products=True,
)
TASK = BiasTask


# ---------------------------------------------------------------------------------------------
# Products, figures and report tables
# ---------------------------------------------------------------------------------------------

def profiles_table(test: str, noise: dict[tuple[int, str], QuadrantNoise]) -> tuple[CsvTable, Section]:
    """Mean row and column profiles of the image area, long format, canonical coordinates."""
    name = f"{test}_profiles.csv"
    rows = [(f"CCD{ccd}", q, axis, i, f"{v:.4f}")
            for (ccd, q), result in sorted(noise.items())
            for axis, profile in (("row", result.row_profile), ("column", result.col_profile))
            for i, v in enumerate(profile)]
    section = Section("Profiles", f"`products/{name}`: mean offset-subtracted level of the image area per canonical "
                      "row (averaged over image columns and frames) and per canonical column (over image rows and "
                      "frames); canonical = output node at row 0, column 0; columns count from the image's first.")
    return CsvTable(name, ("ccd", "quadrant", "axis", "index", "mean_adu"), rows), section


def noise_tables(noise: dict[tuple[int, str], QuadrantNoise], levels: Levels, gains: dict[tuple[int, str], float],
                 sources: set[str], ron_limits: tuple[float, float]) -> str:
    offset_rows, ron_rows = [], []
    for (ccd, q), result in sorted(noise.items()):
        means = {r: float(np.mean(levels[(ccd, q)][r])) for r in REGIONS}
        offset_rows.append([f"CCD{ccd}", q, *(f"{means[r]:.2f}" for r in REGIONS),
                            f"{means['image'] - means['prescan']:+.2f}",
                            f"{means['overscan'] - means['prescan']:+.2f}"])
        gain = gains[(ccd, q)]
        ron_rows.append([f"CCD{ccd}", q, *(f"{result.ron[r]:.3f}" for r in REGIONS),
                         f"{result.ron['prescan'] * gain:.2f}", f"{result.ron['image'] * gain:.2f}"])
    low, high = ron_limits
    return "\n\n".join([
        "Offsets: mean of the 5-sigma clipped pixels of each frame, averaged over frames (ADU). "
        "Read noise: std of each frame minus the per-pixel mean of all frames (clipped, pooled over "
        "frames, x sqrt(n/(n-1))): fixed pattern cancels.",
        markdown_table(["CCD", "Q", "prescan", "image", "overscan", "image-pre", "overscan-pre"], offset_rows),
        f"Read noise (ADU; limits [{low:g}, {high:g}]) and in electrons:",
        markdown_table(["CCD", "Q", "RON pre", "RON img", "RON ove", "RON pre (e-)", "RON img (e-)"], ron_rows),
        f"Gain used: {'; '.join(sorted(sources))}.",
    ])


def ron_figure(test: str, noise: dict[tuple[int, str], QuadrantNoise], ron_limits: tuple[float, float]):
    keys = sorted(noise)
    if not keys:
        return None
    figure, axes, x = quadrant_axes(keys)
    for offset, region in zip((-0.27, 0, 0.27), REGIONS):
        axes.bar(x + offset, [noise[k].ron[region] for k in keys], width=0.27, label=region)
    low, high = ron_limits
    for limit in (low, high):
        axes.axhline(limit, color="k", linestyle=":", linewidth=1)
    finite = [noise[k].ron[r] for k in keys for r in REGIONS if math.isfinite(noise[k].ron[r])]
    axes.set_ylim(0, max([high, *finite]) * 1.12)
    axes.set_ylabel("RON (ADU)")
    axes.set_title(f"{test}: read noise per quadrant (dotted: limits)")
    axes.legend(fontsize=8, ncol=3, loc="lower right")
    return figure


def offsets_figure(test: str, levels: Levels, obsids: dict[int, list[int]]):
    ccds = sorted({ccd for ccd, _ in levels})
    if not ccds:
        return None
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
    figure.suptitle(f"{test}: prescan offset minus its mean over the test (mean in legend)", fontsize=10)
    return figure
