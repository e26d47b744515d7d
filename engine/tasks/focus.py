"""FOCUS00: spot FWHM versus mirror position, best focus per CCD and for the block.

Sub-tasks:

- `lock` (spots.py): every frame read once: generic statistics, spots detected, locked on the
  chamber's pattern and measured (pixel-integrated Gaussian fit: FWHM x and y, peak, flux).
- `check`: the generic checks, then background (BGD_OOL), the scan's best FWHM (FOCUS_OOL)
  and the spot fluxes (FLUX_OOL).
- `basic`: per spot its FWHM = sqrt((FWHMx^2 + FWHMy^2) / 2) at each mirror position and its
  focus curve (focus_lib.py: FWHM^2 a parabola in the mirror position), table per spot.
- `meta`: best focus and best FWHM per CCD and for the block (clipped mean of the spots' foci);
  FOCUS_OOL when no curve fits or the focus lies outside the scanned range, with the reason; the
  focus-curve figure; the suggested new nominal focus for the chamber profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..campaign.chamber import ChamberError
from .check import RawStats
from .context import TaskContext
from .family import Family, ValueSpec
from .figures import markdown_table, new_figure
from .focus_lib import FocusCurve, FocusEstimate, combine_foci, fit_focus_curve
from .outputs import CsvTable, Outputs, Plot, Section, SubTaskResult
from .spots import (
    LOCK_VALUES,
    PointSourceLimits,
    PointSourceTask,
    SpotLock,
    check_focus_scan,
)

SpotKey = tuple[int, str, str]  # (ccd, quadrant, spot name)


@dataclass
class FocusCurves(SubTaskResult):
    """`basic`: each spot's FWHM per mirror position and its fitted curve."""

    points: dict[SpotKey, list[tuple[float, float]]]  # (mirror mm, FWHM px)
    curves: dict[SpotKey, FocusCurve]
    scan: tuple[float, float]


@dataclass
class BestFocus(SubTaskResult):
    per_ccd: dict[int, FocusEstimate]
    block: FocusEstimate


def spot_points(lock: SpotLock) -> dict[SpotKey, list[tuple[float, float]]]:
    points: dict[SpotKey, list[tuple[float, float]]] = {}
    for info, q, spot in lock.spots():
        if spot.fit_ok and not spot.saturated and math.isfinite(info.mirr_pos_mm):
            points.setdefault((info.ccd, q, spot.name), []).append((info.mirr_pos_mm, spot.fwhm_px))
    return points


class FocusTask(PointSourceTask):
    def basic(self, ctx: TaskContext, lock: SpotLock) -> FocusCurves:
        positions = [i.mirr_pos_mm for i in lock.info.values() if math.isfinite(i.mirr_pos_mm)]
        if not positions:
            raise RuntimeError("no frame logs a mirror position (mirr_pos): no focus curve")
        scan = (min(positions), max(positions))
        points = spot_points(lock)
        curves = {key: fit_focus_curve([z for z, _ in p], [w for _, w in p], scan) for key, p in points.items()}
        out = Outputs()
        rows = []
        for (ccd, q, name), curve in sorted(curves.items()):
            rows.append([f"CCD{ccd}", q, name, curve.points, f"{curve.focus_mm:.4f}", f"{curve.fwhm_best_px:.4f}",
                         f"{curve.a:.5g}", f"{curve.b:.5g}", f"{curve.c:.5g}", f"{curve.z_ref:.4f}", int(curve.ok),
                         curve.reason])
        table = f"{ctx.test.name}_focus_spots.csv"
        out.tables.append(CsvTable(table, ("ccd", "quadrant", "spot", "points", "focus_mm", "fwhm_best_px", "a", "b",
                                           "c", "z_ref_mm", "ok", "reason"), rows))
        fitted = sum(c.ok for c in curves.values())
        out.sections.append(Section("Focus curves", (
            f"Per spot, FWHM = sqrt((FWHMx^2 + FWHMy^2) / 2) at each of the mirror positions {scan[0]:g}-{scan[1]:g} mm; "
            "FWHM^2 fitted with a parabola in the mirror position (a defocus blur adds in quadrature), focus at its "
            f"vertex. {fitted} of {len(curves)} spots fit; coefficients (FWHM^2 = a z^2 + b z + c, z = mirror - "
            f"z_ref) in `products/{table}`.")))
        return FocusCurves(points, curves, scan, outputs=out)

    def meta(self, ctx: TaskContext, curves: FocusCurves) -> BestFocus:
        per_ccd = {ccd: combine_foci([c for (cc, _, _), c in curves.curves.items() if cc == ccd])
                   for ccd in sorted({k[0] for k in curves.curves})}
        block = combine_foci(list(curves.curves.values()))
        out = Outputs()
        low, high = curves.scan
        for ccd, estimate in per_ccd.items():
            out.value("best_focus_mm", estimate.focus_mm, ccd)
            out.value("best_focus_error_mm", estimate.error_mm, ccd)
            out.value("fwhm_best_px", estimate.fwhm_best_px, ccd)
            out.value("focus_spots", estimate.spots_used, ccd)
            if not estimate.ok:
                ctx.flags.raise_flag("FOCUS_OOL", f"no best focus: {estimate.reason}", ccd=ccd)
        out.value("best_focus_mm", block.focus_mm)
        out.value("best_focus_error_mm", block.error_mm)
        out.value("fwhm_best_px", block.fwhm_best_px)
        out.value("focus_spots", block.spots_used)
        out.value("mirror_scan_mm", [round(low, 4), round(high, 4)])
        if not block.ok:
            ctx.flags.raise_flag("FOCUS_OOL", f"no best focus for the block: {block.reason}")
        nm = ctx.test.wavelength
        try:
            nominal = ctx.chamber.focus(nm) if nm is not None else math.nan
        except ChamberError:  # the chamber has no focus for this wavelength
            nominal = math.nan
        out.value("nominal_focus_mm", nominal)
        suggested = round(block.focus_mm, 2) if block.ok else math.nan
        out.value("suggested_focus_mm", suggested)
        test = ctx.test.name
        points, fits = curves.points, curves.curves
        out.plots.append(Plot("focus", lambda: focus_figure(test, points, fits, per_ccd, block, (low, high))))
        out.sections.append(Section("Best focus", focus_section(ctx, per_ccd, block, nominal, suggested)))
        return BestFocus(per_ccd, block, outputs=out)


def focus_section(ctx: TaskContext, per_ccd: dict[int, FocusEstimate], block: FocusEstimate, nominal: float,
                  suggested: float) -> str:
    rows = [[f"CCD{ccd}", f"{e.focus_mm:.3f}", f"{e.error_mm:.3f}", f"{e.fwhm_best_px:.3f}",
             f"{e.spots_used}/{e.spots_fitted}/{e.spots_total}", e.reason or "–"] for ccd, e in per_ccd.items()]
    rows.append(["block", f"{block.focus_mm:.3f}", f"{block.error_mm:.3f}", f"{block.fwhm_best_px:.3f}",
                 f"{block.spots_used}/{block.spots_fitted}/{block.spots_total}", block.reason or "–"])
    text = [
        "Best focus: 4-sigma clipped mean of the spots' foci, error std / sqrt(n); best FWHM: median of the "
        "spots' curves at that focus. Spots: used (after clipping) / fitted / measured.",
        markdown_table(["", "best focus (mm)", "error (mm)", "best FWHM (px)", "spots", "no fit because"], rows),
    ]
    nm = ctx.test.wavelength
    if math.isfinite(suggested):
        where = ctx.chamber.path.name if ctx.chamber.path else f"{ctx.chamber.name}.toml"
        text.append(f"Suggested chamber profile update (nominal now {nominal:g} mm, change "
                    f"{suggested - nominal:+.2f} mm): in `configs/chambers/{where}`, `[best_focus_mm]` "
                    f"`{nm} = {suggested:.2f}`; then rewrite the point-source scripts.")
    else:
        text.append("No suggestion for the chamber profile: the block's focus was not found.")
    return "\n\n".join(text)


CCD_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")


def focus_figure(test: str, points: dict[SpotKey, list[tuple[float, float]]], curves: dict[SpotKey, FocusCurve],
                 per_ccd: dict[int, FocusEstimate], block: FocusEstimate, scan: tuple[float, float]):
    """One panel, a colour per CCD: every spot's FWHM per mirror position, its curve, the CCD's best
    focus (solid) and the block's (dotted). The run waits for this figure before its report: one
    panel (and one artist per kind) takes 0.09 s of CPU, three panels 0.22 s (their tick labels
    and layout are most of it)."""
    ccds = sorted(per_ccd)
    if not ccds:
        return None
    from matplotlib.collections import LineCollection

    figure = new_figure(6.4, 3.8)
    axes = figure.add_subplot(1, 1, 1)
    grid = np.linspace(scan[0], scan[1], 100)
    verticals = []  # (mirror mm, colour, line style)
    for index, ccd in enumerate(ccds):
        colour = CCD_COLOURS[index % len(CCD_COLOURS)]
        keys = [k for k in points if k[0] == ccd]
        if keys:
            z, w = np.array([zw for key in keys for zw in points[key]]).T
            axes.plot(z, w, ".", color=colour, markersize=3, alpha=0.6)
        fitted = [np.column_stack([grid, curves[key].fwhm_at(grid)]) for key in keys if curves[key].ok]
        if fitted:
            axes.add_collection(LineCollection(fitted, colors=colour, alpha=0.25, linewidths=0.8))
        estimate = per_ccd[ccd]
        if estimate.ok:
            verticals.append((estimate.focus_mm, colour, "solid"))
            label = f"CCD{ccd}: {estimate.focus_mm:.3f} mm, {estimate.fwhm_best_px:.2f} px"
        else:
            label = f"CCD{ccd}: no focus"
        axes.text(0.97, 0.96 - 0.07 * index, label, color=colour, fontsize=8, ha="right", va="top",
                  transform=axes.transAxes)
    if block.ok:
        verticals.append((block.focus_mm, "k", "dotted"))
    axes.autoscale_view()
    if verticals:  # one artist for every vertical line, spanning the panel's height
        foci, colours, styles = zip(*verticals)
        axes.vlines(foci, 0, 1, colors=colours, linestyles=styles, linewidth=1, transform=axes.get_xaxis_transform())
    axes.set_xlabel("mirror position (mm)")
    axes.set_ylabel("spot FWHM (px)")
    summary = f"block {block.focus_mm:.3f} mm, {block.fwhm_best_px:.2f} px (dotted)" if block.ok else "no block focus"
    axes.set_title(f"{test}: spot FWHM vs mirror, curves, best focus per CCD;\n{summary}", fontsize=9)
    return figure


def check_scan(ctx: TaskContext, stats: RawStats) -> None:
    """Background, best FWHM of the scan, spot fluxes."""
    check_focus_scan(ctx, stats)


FAMILY = Family(
    name="focus",
    summary="FOCUS00: spot FWHM versus mirror position, best focus per CCD and for the block",
    subtasks=("init", "lock", "check", "basic", "meta", "report"),
    task=FocusTask,
    limits=PointSourceLimits,
    values=(
        *LOCK_VALUES,
        ValueSpec("best_focus_mm", "mm", 4, "mirror position of best focus: per CCD, and for the block in values",
                  key=True, scope="ccd"),
        ValueSpec("best_focus_error_mm", "mm", 4, "error of the best focus (std of the spots' foci / sqrt(n))",
                  scope="ccd"),
        ValueSpec("fwhm_best_px", "px", 3, "spot FWHM at best focus (median of the spots' curves)", key=True,
                  scope="ccd"),
        ValueSpec("focus_spots", "", None, "spots whose focus entered the estimate", scope="ccd"),
        ValueSpec("mirror_scan_mm", "mm", None, "mirror positions scanned [first, last]", scope="test"),
        ValueSpec("nominal_focus_mm", "mm", 4, "the chamber profile's best focus at the test's wavelength",
                  scope="test"),
        ValueSpec("suggested_focus_mm", "mm", 2, "suggested new [best_focus_mm] of the chamber profile",
                  scope="test"),
    ),
    checks=(check_scan,),
)
TASK = FocusTask
