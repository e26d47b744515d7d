"""FLATFLUX00_<w>: flat fluence and flux per column against the expected relative fluences, and the
measured time to full well per wavelength, so a user can correct the chamber profile.

Sub-tasks (after the generic `init`):

- `check` (family part, flat_lib.py): per column the median raw fluence (image minus prescan
  median) against min(exptime / tFWC_flat(λ), 1) x `full_well_adu` within
  `flat_fluence_tolerance` (FLUENCE_OOL); per quadrant the flux, slope of fluence against the
  logged exposure time (frames below 80 % of full well), and the time to full well it implies,
  against the chamber profile's tFWC_flat(λ) within `tfwc_tolerance` (FLUX_OOL).
- `basic`: the same measurements gathered per wavelength: the median over CCDs and quadrants of
  the measured time to full well, the profile's value and the one to write in the profile
  (configs/chambers/<chamber>.toml, `[tfwc_flat]`), a table of every column and a figure.

vison ran FLATFLUX00 as a PTC (pairs it never had) and timed it with the point source's full-well
times; its useful output was the check. Here the check's numbers become the suggested profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .base import AnalysisTask
from .check import RawStats
from .context import TaskContext
from .family import Family, ValueSpec
from .figures import markdown_table, new_figure
from .flat_lib import (FLUENCE_VALUES, FlatLimitsBase, QuadrantFluence, check_flat_fluence_and_flux,
                       quadrant_fluences, frame_infos)
from .check import quadrant_frames
from .measures import measure_frames
from .outputs import CsvTable, Outputs, Plot, Section, SubTaskResult


@dataclass(frozen=True)
class FlatFluxLimits(FlatLimitsBase):
    pass


@dataclass
class FluxSummary(SubTaskResult):
    """`basic`: per quadrant fluences and flux; per wavelength the measured time to full well."""

    quadrants: dict[tuple[int, str], QuadrantFluence]
    measured_tfwc: dict[int, float]  # nm -> median over quadrants (s)


def raw_stats_of(ctx: TaskContext) -> RawStats:
    """The raw measurements (made once per analysis; the check's when it ran)."""
    return RawStats({key: s for key, s in measure_frames(ctx).items() if not isinstance(s, str)})


def suggested_tfwc(measured: list[float]) -> float:
    """The value to write in the profile: the median over quadrants, to 3 significant figures."""
    finite = [m for m in measured if math.isfinite(m) and m > 0]
    if not finite:
        return math.nan
    value = float(np.median(finite))
    return float(f"{value:.3g}")


class FlatFluxTask(AnalysisTask):
    def basic(self, ctx: TaskContext, stats: RawStats | None = None) -> FluxSummary:
        stats = stats or raw_stats_of(ctx)
        infos = frame_infos(ctx)
        limits = ctx.limits
        full_well = float(limits.full_well_adu)
        profile = dict(ctx.chamber.tfwc_flat)
        quadrants = {(ccd, q): quadrant_fluences(infos, frames, full_well, profile)
                     for ccd, q, frames in quadrant_frames(ctx, stats)}
        out = Outputs()
        per_nm: dict[int, list[float]] = {}
        rows, table = [], []
        for (ccd, q), result in sorted(quadrants.items()):
            for nm, value in result.tfwc_measured.items():
                per_nm.setdefault(nm, []).append(value)
            for column in result.columns:
                ratio = column.fluence / column.expected if column.expected else math.nan
                table.append((f"CCD{ccd}", q, column.label, f"{column.exptime:g}", column.nm,
                              f"{column.fluence:.1f}", f"{column.expected:.1f}", f"{ratio:.4f}"))
        measured = {nm: float(np.median([v for v in values if math.isfinite(v)] or [math.nan]))
                    for nm, values in per_nm.items()}
        suggestions = {nm: suggested_tfwc(values) for nm, values in per_nm.items()}
        nm = ctx.test.wavelength if ctx.test.wavelength in measured else next(iter(measured), None)
        chamber_file = str(ctx.chamber.path) if ctx.chamber.path else f"configs/chambers/{ctx.chamber.name}.toml"
        if nm is not None:
            nominal = profile.get(nm, math.nan)
            out.value("wavelength_nm", nm)
            out.value("tfwc_flat_profile_s", nominal)
            out.value("tfwc_flat_measured_s", measured[nm])
            out.value("tfwc_flat_suggested_s", suggestions[nm])
            out.value("tfwc_change_pct", 100 * (measured[nm] / nominal - 1) if nominal else math.nan)
            out.value("chamber_profile", f"{chamber_file} [tfwc_flat] {nm}")
        for (nm_, values) in sorted(per_nm.items()):
            nominal = profile.get(nm_, math.nan)
            rows.append([f"{nm_}", f"{nominal:g}", f"{measured[nm_]:.4g}", f"{suggestions[nm_]:g}",
                         f"{100 * (measured[nm_] / nominal - 1):+.1f}" if nominal else "–", str(len(values))])
        name = f"{ctx.test.name}_fluences.csv"
        out.tables.append(CsvTable(name, ("ccd", "quadrant", "column", "exptime_s", "wavelength_nm", "fluence_adu",
                                          "expected_adu", "ratio"), table))
        test = ctx.test.name
        tolerance = float(limits.flat_fluence_tolerance)
        out.plots.append(Plot("fluence", lambda: fluence_figure(test, quadrants, full_well, profile, tolerance)))
        advice = []
        for nm_, value in sorted(suggestions.items()):
            nominal = profile.get(nm_)
            if nominal and math.isfinite(value) and abs(measured[nm_] / nominal - 1) > float(limits.tfwc_tolerance):
                advice.append(f"**Correct the chamber profile**: in `{chamber_file}`, `[tfwc_flat]` set `{nm_} = "
                              f"{value:g}` (now {nominal:g}), then rewrite the flat scripts.")
            elif nominal and math.isfinite(value):
                advice.append(f"{nm_} nm: the profile's {nominal:g} s agrees with the measured {measured[nm_]:.3g} s "
                              f"within {100 * float(limits.tfwc_tolerance):g} % (suggested value {value:g} s).")
        out.sections.append(Section("Flat flux and time to full well", "\n\n".join([
            f"Per quadrant the flux is the slope of the raw fluence (image minus prescan median) against the logged "
            f"exposure time over frames below 80 % of full well; time to full well = {full_well:g} ADU / flux "
            f"(`full_well_adu`). Per wavelength, the median over CCDs and quadrants. Columns: `products/{name}`.",
            markdown_table(["nm", "profile tFWC (s)", "measured (s)", "suggested (s)", "change (%)", "quadrants"], rows),
            *advice,
        ])))
        return FluxSummary(quadrants, measured, outputs=out)


def fluence_figure(test: str, quadrants: dict[tuple[int, str], QuadrantFluence], full_well: float,
                   profile: dict[int, float], tolerance: float):
    if not quadrants:
        return None
    figure = new_figure(8, 4)
    axes = figure.add_subplot(1, 1, 1)
    for (ccd, q), result in sorted(quadrants.items()):
        t = [c.exptime for c in result.columns]
        axes.plot(t, [c.fluence for c in result.columns], marker="o", markersize=3, linewidth=0.8,
                  label=f"CCD{ccd}{q}")
    expected = sorted({(c.exptime, c.expected) for r in quadrants.values() for c in r.columns})
    if expected:
        t, e = zip(*expected)
        e = np.array(e)
        axes.plot(t, e, "k--", linewidth=1, label="expected")
        axes.fill_between(t, e * (1 - tolerance), e * (1 + tolerance), color="k", alpha=0.1)
    axes.set_xlabel("exposure time (s, logged)")
    axes.set_ylabel("fluence (ADU)")
    axes.set_title(f"{test}: fluence per column (band: +-{100 * tolerance:g} %)")
    axes.legend(fontsize=6, ncol=3)
    return figure


FAMILY = Family(
    name="flatflux",
    noise_regions=("prescan",),  # the overscan after an exposed image holds trailed charge, not noise
    summary="FLATFLUX00: flat fluence and flux per column against the expected relative fluences.",
    subtasks=("init", "check", "basic", "report"),
    task=FlatFluxTask,
    limits=FlatFluxLimits,
    values=(
        *FLUENCE_VALUES,
        ValueSpec("wavelength_nm", "nm", None, "wavelength of the test's flats", scope="test"),
        ValueSpec("tfwc_flat_profile_s", "s", 4, "the chamber profile's time to full well at this wavelength",
                  scope="test"),
        ValueSpec("tfwc_flat_measured_s", "s", 4, "measured time to full well: median over CCDs and quadrants",
                  key=True, scope="test"),
        ValueSpec("tfwc_flat_suggested_s", "s", None, "value to write in the chamber profile (3 significant figures)",
                  scope="test"),
        ValueSpec("tfwc_change_pct", "%", 1, "measured minus profile time to full well, relative", key=True,
                  scope="test"),
        ValueSpec("chamber_profile", "", None, "the chamber profile file and key to correct", scope="test"),
    ),
    checks=(check_flat_fluence_and_flux,),
)
TASK = FlatFluxTask
