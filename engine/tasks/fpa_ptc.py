"""PTC01 (and PTC02_*) over the focal plane: the gain and blooming of the 144 quadrants of LE1 flat pairs.

The block PTC01's analysis (ptc.py, science in ptc_lib.py), by its functions, on each LE1 quadrant:
- pairs: frames of the same fluence, consecutive in OBSID order, (0, 1), (2, 3)... (`plan_pairs`).
  The FPA log has no test structure: a fluence is an exposure time, each extension's EXPTIME;
- tiles: the block's pair consumer (ptc.FAMILY.per_quadrant.start, ptc_lib.PairTiles) fed by
  the quadrant unit (fpa_family.py) as the block's quadrant pass feeds it: each frame's quadrant
  counts as read (frame orientation) and its check statistics (the prescan's clipped mean is the
  offset). So every frame is read once, and a unit holds one pair's first quadrant at a time;
- a pair whose two fluences (image median minus the offset, per quadrant) differ by more than
  `pair_fluence_tolerance` is left out (POORQUALDATA), as the block's prep does
  (ptc.fluence_mismatch); each fluence against its exposure time x the flux of the unsaturated
  ones (FLUENCE_OOL, ptc.fluence_outliers), per quadrant;
- the fit (ptc_lib.fit_ptc) and its values (ptc.fit_values: gain_e_per_adu, gain_err_e_per_adu,
  quad_term_per_adu, ..., fit_quality), the gain checks (ptc.gain_problems: BADFIT, REQNOTMET);
- the generic check's offsets and prescan noise (RON_OOL on the prescan: the family's noise region).
Products (`meta`): the gain table `products/<TEST>_GAIN_TB.csv` (ptc.GAIN_TABLE_COLUMNS, one row
per C_ji and quadrant). Not done: the block's PTC curves table and figure per CCD.

The FPA mode uses the family's default limits (no campaign file), here as in pipeline/fpa_run.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..formats.le1 import LE1Extension
from .fpa_bias import ron_flags
from .fpa_family import (
    CcdValues,
    FPAConsumer,
    FPAFamily,
    FPAQuadrantResult,
    check_values,
)
from .outputs import CsvTable
from .ptc import FAMILY as PTC_FAMILY
from .ptc import (
    GAIN_TABLE_COLUMNS,
    PTC_METHOD,
    PTCLimits,
    fit_values,
    fluence_mismatch,
    fluence_outliers,
    gain_problems,
    gain_table_row,
)
from .ptc_lib import FIT_RANGE_ADU, PairQuadrant, PTCFit, PTCPoints, fit_ptc

LIMITS: PTCLimits = PTC_FAMILY.limits()  # what fpa_run passes to `flags` (declared.limits())
EXPTIME_DECIMALS = 3  # exposure times equal to the ms are one fluence


def fluence_columns(exptimes: Sequence[float | None]) -> list[int | None]:
    """Per frame (OBSID order), its fluence column: the rank of its exposure time among the
    distinct ones in order of first appearance; None for a frame without EXPTIME."""
    ranks: dict[float, int] = {}
    columns: list[int | None] = []
    for exptime in exptimes:
        if exptime is None or not math.isfinite(exptime):
            columns.append(None)
            continue
        columns.append(ranks.setdefault(round(exptime, EXPTIME_DECIMALS), len(ranks)))
    return columns


def plan_pairs(extensions: Sequence[LE1Extension]) -> tuple[tuple[int, int], ...] | None:
    """FPAConsumer.plan: frames (0, 1), (2, 3)... of each fluence (indices of the quadrant's
    frames in OBSID order), as ptc.plan_pairs pairs each column of the block's structure. A frame
    the unit leaves out (unreadable, no offset) costs its pair: its partner waits in vain."""
    by_column: dict[int, list[int]] = {}
    for index, column in enumerate(fluence_columns([e.exptime for e in extensions])):
        if column is not None:
            by_column.setdefault(column, []).append(index)
    return tuple((first, second) for indices in by_column.values()
                 for first, second in zip(indices[0::2], indices[1::2])) or None


def frame_fluence_adu(stats: Any) -> float:
    """A frame's fluence in one quadrant: image median minus the offset (ptc.frame_fluence's
    terms, for this quadrant alone)."""
    return stats.image.median - stats.prescan.clipped_mean


def quadrant_fit(result: FPAQuadrantResult,
                 limits: PTCLimits = LIMITS) -> tuple[PTCFit, list[tuple[int, int]], list[str]]:
    """(the quadrant's PTC fit, the pairs fitted, the pairs left out with why) from its unit's
    record: the consumer's tiles, pairs of unequal fluences dropped as the block's prep drops them."""
    tiles: Mapping[tuple[int, int], PairQuadrant] = result.consumed or {}
    position = {index: k for k, index in enumerate(result.used)}
    columns = dict(zip(result.used, fluence_columns(result.exptimes)))
    tolerance = float(limits.pair_fluence_tolerance)
    kept: list[tuple[int, int]] = []
    rejected: list[str] = []
    for first, second in sorted(tiles):
        one, two = position[first], position[second]
        fluence1, fluence2 = (frame_fluence_adu(result.frame_stats[k]) for k in (one, two))
        mismatch = fluence_mismatch(fluence1, fluence2)
        if mismatch > tolerance:
            rejected.append(f"pair {result.frame_names[one]}/{result.frame_names[two]} (EXPTIME "
                            f"{result.exptimes[one]:g} s): fluences {fluence1:.1f} and {fluence2:.1f} ADU differ by "
                            f"{100 * mismatch:.1f} % (limit {100 * tolerance:g} %): pair left out")
        else:
            kept.append((first, second))
    chosen = [tiles[pair] for pair in kept]
    column_of = [np.full(t.means.size, columns[pair[0]]) for pair, t in zip(kept, chosen)]

    def joined(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)

    points = PTCPoints(joined([t.means for t in chosen], float), joined([t.variances for t in chosen], float),
                       joined([t.pixels for t in chosen], int), joined([t.saturated for t in chosen], int),
                       joined(column_of, int))
    return fit_ptc(points, rel_error_max=float(limits.gain_rel_err_max)), kept, rejected


def quadrant_values(result: FPAQuadrantResult, gain: float) -> dict[str, Any]:
    """The PTC family's per-quadrant values of one FPA quadrant (not yet rounded); `gain` (the
    header's) is not used: the PTC measures it."""
    fit, kept, _ = quadrant_fit(result)
    return {**check_values(result), **fit_values(fit), "pairs_used": len(kept)}


def quadrant_flags(result: FPAQuadrantResult, limits: PTCLimits) -> list[tuple[str, str]]:
    """POORQUALDATA for each pair left out (unequal fluences), FLUENCE_OOL for a fluence off its
    exposure time x the flux of the unsaturated fluences (ptc.fluence_outliers; the block judges
    each column's median over a CCD's quadrants, the FPA each quadrant's)."""
    _, _, rejected = quadrant_fit(result, limits)
    raised = [("POORQUALDATA", reason) for reason in rejected]
    levels: dict[int, list[float]] = {}
    times: dict[int, float] = {}
    for column, exptime, stats in zip(fluence_columns(result.exptimes), result.exptimes, result.frame_stats):
        if column is not None and exptime is not None:
            levels.setdefault(column, []).append(frame_fluence_adu(stats))
            times[column] = exptime
    fluence = {column: float(np.median(values)) for column, values in levels.items()}
    return raised + [("FLUENCE_OOL", reason)
                     for reason in fluence_outliers(fluence, times, float(limits.flat_fluence_tolerance))]


def ptc_flags(ccds: CcdValues, limits: Any) -> list[dict[str, Any]]:
    """BADFIT / REQNOTMET as the block's check_gains (ptc.gain_problems), RON_OOL for a prescan
    noise outside the limits (the generic check's, on the family's noise region)."""
    raised = []
    for ccdid, quadrants in ccds.items():
        for quadrant, values in quadrants.items():
            for flag, reason in gain_problems(_number(values.get("gain_e_per_adu")),
                                              _number(values.get("gain_err_e_per_adu")),
                                              str(values.get("fit_quality", "OK")), limits):
                raised.append({"flag": flag, "ccd": ccdid, "quadrant": quadrant, "reason": reason})
    return raised + ron_flags(ccds, tuple(limits.ron_adu), ("ron_prescan_adu",))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def ptc_test_values(results: Sequence[FPAQuadrantResult]) -> dict[str, Any]:
    used, rejected = 0, []
    for result in results:
        _, kept, left_out = quadrant_fit(result)
        used += len(kept)
        rejected += [f"{ccd_quadrant(result.extname)}: {reason}" for reason in left_out]
    low, high = FIT_RANGE_ADU
    return {"pairs_used": used, "pairs_rejected": rejected, "ptc_fit_range_adu": [low, high],
            "ptc_method": PTC_METHOD}


def ccd_quadrant(extname: str) -> str:
    """'4-1.G' -> 'C_41 G' (the LE1 extension name of CCD C_ji's quadrant)."""
    match = re.fullmatch(r"(\d)-(\d)\.([EFGH])", extname)
    return f"C_{match[1]}{match[2]} {match[3]}" if match else extname


def gain_tables(test: str, ccds: CcdValues) -> list[CsvTable]:
    """The gain table (the block's columns), a row per C_ji and quadrant in LE1 order."""
    rows = [gain_table_row(ccdid, quadrant, values) for ccdid, quadrants in ccds.items()
            for quadrant, values in quadrants.items()]
    return [CsvTable(f"{test}_GAIN_TB.csv", GAIN_TABLE_COLUMNS, rows)]


def ptc_tests() -> tuple[str, ...]:
    """PTC01 and the PTC02 instances (wavelengths, temperatures, RD voltages): flat pairs all, the
    same analysis over the FPA (the catalogue's instances of the family)."""
    from ..campaign.catalogue import acquired_tests

    return acquired_tests("ptc")


FPA_FAMILY = FPAFamily(
    tests=ptc_tests(),
    family="ptc",
    summary="gain per quadrant from the photon transfer curve of flat pairs, blooming, the FPA gain table",
    quadrant_values=quadrant_values,
    flags=ptc_flags,
    quadrant_flags=quadrant_flags,
    consumer=FPAConsumer(start=PTC_FAMILY.per_quadrant.start, plan=plan_pairs),
    tables=gain_tables,
    test_values=ptc_test_values,
    maps=("gain_e_per_adu",),
    map_limits=lambda value, limits: tuple(limits.gain_e_per_adu) if value == "gain_e_per_adu" else None,
    report_title="Photon transfer curve and gain",
    report_columns=(("offset pre (ADU)", "offset_prescan_adu", 2), ("pairs", "pairs_used", 0),
                    ("gain (e-/ADU)", "gain_e_per_adu", 4), ("error", "gain_err_e_per_adu", 4),
                    ("bloom (ADU)", "bloom_adu", 0), ("points", "ptc_points_fitted", 0)),
    report_method=("Pairs: frames of the same exposure time (EXPTIME), consecutive in OBSID order; a pair whose "
                   "fluences (image median minus the prescan offset) differ by more than "
                   f"{100 * LIMITS.pair_fluence_tolerance:g} % is left out. Per pair and quadrant, "
                   f"{PTC_METHOD}, on tile points with {FIT_RANGE_ADU[0]:g} < mean < {FIT_RANGE_ADU[1]:g} ADU "
                   "(the block PTC01's analysis, docs/results/ptc.md). Fit quality (fit_quality column of the gain "
                   "table): OK, or FEWPOINTS / BADERRORS / POORFIT / EXCEPTION."),
)
