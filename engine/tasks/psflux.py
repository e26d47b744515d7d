"""PSFLUX00: flux per spot and column against the expected fluence.

Sub-tasks:

- `lock` (spots.py): every frame read once: generic statistics, spots locked and measured.
- `check`: the generic checks, then background (BGD_OOL), spot FWHM (FOCUS_OOL), peak and flux
  per column (FLUX_OOL): PSFLUX00's useful product, as in vison.
- `basic`: per spot and column the aperture flux and peak against what the chamber's tFWC_point
  predicts (peak: 55000 ADU x exptime / tFWC_point; flux: that peak times 2 pi sigma^2 of the
  chamber's nominal FWHM); per quadrant the median ratios and the flux per second fitted through
  the columns; FLUX_OOL when the flux ratio leaves 1 +- `saturation_time_tolerance`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .check import RawStats
from .context import TaskContext
from .family import Family, ValueSpec
from .figures import markdown_table, new_figure
from .outputs import CsvTable, Outputs, Plot, Section, SubTaskResult
from .spots import (
    EFFECTIVE_SATURATION_ADU,
    FWHM_PER_SIGMA,
    LOCK_VALUES,
    PointSourceLimits,
    PointSourceTask,
    SpotLock,
    check_point_sources,
)


@dataclass(frozen=True)
class ColumnFlux:
    exptime_s: float
    flux_adu: float
    expected_flux_adu: float
    peak_adu: float
    expected_peak_adu: float


@dataclass
class SpotFluxes(SubTaskResult):
    columns: dict[tuple[int, str], list[ColumnFlux]]


class PSFluxTask(PointSourceTask):
    def basic(self, ctx: TaskContext, lock: SpotLock) -> SpotFluxes:
        sigma = ctx.chamber.fwhm_px / FWHM_PER_SIGMA
        area = 2 * math.pi * sigma ** 2
        tolerance = float(ctx.limits.saturation_time_tolerance)
        out = Outputs()
        rows, summary = [], []
        columns: dict[tuple[int, str], list[ColumnFlux]] = {}
        keys = sorted({(info.ccd, q) for info, q, _ in lock.spots()})
        for ccd, q in keys:
            columns[(ccd, q)] = []
            for column in lock.columns():
                spots = [(info, s) for info, qq, s in lock.spots(ccd, q) if info.column == column and not s.saturated]
                if not spots:
                    continue
                exptime = lock.column_exptime(column)
                peak_expected = lock.expected_peak_adu(exptime)
                flux_expected = peak_expected * area
                for name in sorted({s.name for _, s in spots}):
                    mine = [s for _, s in spots if s.name == name]
                    flux, peak = float(np.median([s.flux_adu for s in mine])), float(np.median([s.peak_adu for s in mine]))
                    rows.append([f"CCD{ccd}", q, name, column + 1, f"{exptime:g}", f"{flux:.1f}", f"{flux_expected:.1f}",
                                 f"{flux / flux_expected:.4f}", f"{peak:.1f}", f"{peak_expected:.1f}",
                                 f"{peak / peak_expected:.4f}"])
                columns[(ccd, q)].append(ColumnFlux(exptime, float(np.median([s.flux_adu for _, s in spots])),
                                                    flux_expected, float(np.median([s.peak_adu for _, s in spots])),
                                                    peak_expected))
            measured = columns[(ccd, q)]
            if not measured:
                continue
            flux_ratio = float(np.median([c.flux_adu / c.expected_flux_adu for c in measured]))
            peak_ratio = float(np.median([c.peak_adu / c.expected_peak_adu for c in measured]))
            times = np.array([c.exptime_s for c in measured])
            fluxes = np.array([c.flux_adu for c in measured])
            rate = float(np.sum(times * fluxes) / np.sum(times * times)) if np.sum(times * times) > 0 else math.nan
            out.value("flux_ratio", flux_ratio, ccd, q)
            out.value("peak_ratio", peak_ratio, ccd, q)
            out.value("flux_adu_per_s", rate, ccd, q)
            out.value("flux_adu_by_column", [round(c.flux_adu, 1) for c in measured], ccd, q)
            summary.append([f"CCD{ccd}", q, f"{rate:.4g}", f"{flux_ratio:.3f}", f"{peak_ratio:.3f}"])
            if math.isfinite(flux_ratio) and not 1 - tolerance <= flux_ratio <= 1 + tolerance:
                ctx.flags.raise_flag("FLUX_OOL", f"spot flux {flux_ratio:.2f} x the expected (median over "
                                     f"{len(measured)} columns) outside [{1 - tolerance:g}, {1 + tolerance:g}]",
                                     ccd=ccd, quadrant=q)
        name = f"{ctx.test.name}_fluxes.csv"
        out.tables.append(CsvTable(name, ("ccd", "quadrant", "spot", "column", "exptime_s", "flux_adu",
                                          "expected_flux_adu", "flux_ratio", "peak_adu", "expected_peak_adu",
                                          "peak_ratio"), rows))
        out.sections.append(Section("Spot fluxes against the expected fluence", "\n\n".join([
            f"Expected peak: {EFFECTIVE_SATURATION_ADU:g} ADU x exptime / tFWC_point ({lock.tfwc_point_s} s at "
            f"{lock.wavelength_nm} nm); expected flux: that peak x 2 pi sigma^2 of the chamber's nominal FWHM "
            f"({ctx.chamber.fwhm_px:g} px). Fluxes: aperture sums (radius 8 px); per spot and column in "
            f"`products/{name}`; the flux per second is a line through the origin over the columns.",
            markdown_table(["CCD", "Q", "flux (ADU/s)", "flux / expected", "peak / expected"], summary)])))
        test = ctx.test.name
        out.plots.append(Plot("fluxes", lambda: flux_figure(test, columns)))
        return SpotFluxes(columns, outputs=out)


def flux_figure(test: str, columns: dict[tuple[int, str], list[ColumnFlux]]):
    keys = [k for k, v in sorted(columns.items()) if v]
    if not keys:
        return None
    figure = new_figure(6.5, 4.0)
    axes = figure.add_subplot(1, 1, 1)
    for key in keys:
        measured = columns[key]
        axes.plot([c.exptime_s for c in measured], [c.flux_adu for c in measured], "o-", markersize=3,
                  label=f"CCD{key[0]} {key[1]}")
    first = columns[keys[0]]
    axes.plot([c.exptime_s for c in first], [c.expected_flux_adu for c in first], "k:", label="expected")
    axes.set_xlabel("exposure time (s)")
    axes.set_ylabel("spot flux (ADU)")
    axes.legend(fontsize=6, ncol=3)
    axes.set_title(f"{test}: median spot flux per column", fontsize=9)
    return figure


def check_psflux(ctx: TaskContext, stats: RawStats) -> None:
    """Background, spot FWHM, peaks and fluxes per column."""
    check_point_sources(ctx, stats)


FAMILY = Family(
    name="psflux",
    summary="PSFLUX00: flux per spot and column against the expected fluence",
    subtasks=("init", "lock", "check", "basic", "report"),
    task=PSFluxTask,
    limits=PointSourceLimits,
    values=(
        *LOCK_VALUES,
        ValueSpec("flux_ratio", "", 3, "spot flux / expected flux, median over columns", key=True),
        ValueSpec("peak_ratio", "", 3, "spot peak / expected peak, median over columns"),
        ValueSpec("flux_adu_per_s", "ADU/s", 2, "spot flux per second: line through the origin over the columns",
                  key=True),
        ValueSpec("flux_adu_by_column", "ADU", None, "median spot flux per column"),
    ),
    checks=(check_psflux,),
)
TASK = PSFluxTask
