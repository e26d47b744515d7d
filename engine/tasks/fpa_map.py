"""FPA maps: a per-quadrant value drawn over the focal plane, in the LE1 mosaic layout.

The 36 CCDs in 6 slices (rows, slice 1 at the bottom) x 6 columns, each CCD 2 x 2 quadrant cells
placed as the LE1 mosaic places them (formats/fpa.py), labelled with the CCD id, its block and
block CCD; cells without a value are grey, values outside the limits (when given) outlined red.
matplotlib on the Agg canvas (no display).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..formats.fpa import COLUMNS, DEFAULT_DESIGN, SLICES, fpa_layout
from .figures import new_figure

CELLS_X, CELLS_Y = 2 * COLUMNS, 2 * SLICES


def value_grid(values: Mapping[tuple[str, str], float], design: str = DEFAULT_DESIGN) -> np.ndarray:
    """(12, 12) array [y, x] of the values by mosaic cell; NaN where none (keys: (C_ji, quadrant))."""
    layout = fpa_layout(design)
    grid = np.full((CELLS_Y, CELLS_X), np.nan)
    for (ccdid, quadrant), value in values.items():
        x, y = layout.quadrant(ccdid, quadrant).mosaic_cell
        grid[y, x] = value if value is not None else np.nan
    return grid


def fpa_map_figure(values: Mapping[tuple[str, str], float], *, title: str, unit: str = "",
                   limits: tuple[float, float] | None = None, design: str = DEFAULT_DESIGN,
                   blocks: Mapping[str, str] | None = None):
    """The figure; `blocks` (C_ji -> label) replaces the layout's block names in the CCD labels."""
    import matplotlib

    layout = fpa_layout(design)
    grid = value_grid(values, design)
    figure = new_figure(9.6, 8.4)
    axes = figure.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d0d0d0")
    finite = grid[np.isfinite(grid)]
    vmin, vmax = (float(np.percentile(finite, 1)), float(np.percentile(finite, 99))) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    image = axes.imshow(np.ma.masked_invalid(grid), origin="lower", cmap=cmap, vmin=vmin, vmax=vmax,
                        extent=(0, CELLS_X, 0, CELLS_Y), interpolation="nearest")
    for edge in range(0, CELLS_X + 1, 2):
        axes.axvline(edge, color="white", linewidth=2)
    for edge in range(0, CELLS_Y + 1, 2):
        axes.axhline(edge, color="white", linewidth=2)
    for place in layout.quadrants:
        x, y = place.mosaic_cell
        value = grid[y, x]
        text = place.quadrant if math.isnan(value) else f"{place.quadrant}\n{value:.4g}"
        axes.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=5, color="black")
        if limits is not None and not math.isnan(value) and not limits[0] <= value <= limits[1]:
            axes.add_patch(matplotlib.patches.Rectangle((x + 0.05, y + 0.05), 0.9, 0.9, fill=False,
                                                        edgecolor="red", linewidth=2))
    for ccd in layout.ccds.values():
        label = (blocks or {}).get(ccd.ccdid, f"{ccd.block} CCD{ccd.block_ccd}")
        axes.text(2 * (ccd.column - 1) + 1, 2 * (ccd.slice - 1) + 1, f"{ccd.ccdid}\n{label}", ha="center",
                  va="center", fontsize=5.5, fontweight="bold", color="white",
                  bbox={"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.45, "linewidth": 0})
    axes.set_xticks([2 * i + 1 for i in range(COLUMNS)], [f"column {i + 1}" for i in range(COLUMNS)], fontsize=8)
    axes.set_yticks([2 * j + 1 for j in range(SLICES)], [f"slice {j + 1}" for j in range(SLICES)], fontsize=8)
    colorbar = figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02)
    colorbar.set_label(unit or "value")
    said = f"{int(np.isfinite(grid).sum())} of {CELLS_X * CELLS_Y} quadrants"
    if limits is not None:
        said += f"; red: outside [{limits[0]:g}, {limits[1]:g}]"
    axes.set_title(f"{title}\n({said}; LE1 mosaic layout, {design} design)", fontsize=9)
    return figure


def save_fpa_map(path: Path, values: Mapping[tuple[str, str], float], **options) -> Path:
    """Write the map as a PNG (temporary name, then rename)."""
    figure = fpa_map_figure(values, **options)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part-{os.getpid()}.png")
    try:
        figure.savefig(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
