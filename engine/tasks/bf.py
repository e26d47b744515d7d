"""BF01, BF01WAVE: pixel covariances and the brighter-fatter kernel, from the PTC01 / PTC02_<nm> pairs.

No acquisition of their own (the catalogue's `surrogate`): the data set is the surrogate's frames.

- `check`: the generic checks (saturation is expected: the PTC's top columns saturate).
- `prep`: offsets and the flat pairs, as PTC's (ptc.pair_frames): pairs of unequal fluences are
  left out with the reason (POORQUALDATA).
- `extract_COV` (ptc_lib.pair_covariance): per pair and quadrant, the fluence-scaled
  difference of the two frames (PRNU cancels), a smooth 2-D surface removed, pixels beyond 4
  robust sigmas (and ADC-saturated ones) masked; covariances for lags 0..4 in rows and columns,
  each over the pixel pairs both kept, divided by the clipping's analytic bias (ptc_lib) and
  halved (one frame's). Averaged per fluence column over its pairs. Computed as the check reads
  the frames (Family.per_quadrant: ptc_lib.PairCovariances keeps a pair's first quadrant until
  the second comes; compiled sweeps, compiled/bf_kernels.py, ~40 ms of CPU a full-size quadrant),
  so the frames are read once; a pair the check's read did not make is read again
  (ptc_lib.pair_covariance_unit, the same numbers).
- `extract_BF`: per column the correlation coefficients C_ij / C_00; the nearest neighbours'
  (serial: same row, next column; parallel: next row) fitted against the mean as a straight line
  and given at BF_REFERENCE_ADU. The kernel is the first-order "a matrix" (Astier et al. 2019):
  a_ij = d(C_ij g / mu) / d(mu g), the covariance in units of the Poisson variance per electron
  of fluence (C_00 with the read noise squared removed), fitted over the columns below
  NEAR_SATURATION_ADU; a charge-conserving brighter-fatter effect sums to 0 over all lags
  (`kernel_sum_per_e`). vison solved Guyonnet+15 boundary shifts from a smooth model; the a
  matrix is what the same covariances measure without a model, and what BF corrections use.
- `meta`: per CCD a FITS product (provenance header; per quadrant COV_q and CORR_q cubes
  [column, drow, dcol], KERNEL_q 9 x 9 symmetric a matrix, and a FLUENCES table) and the
  correlation table (CSV), figure of the nearest-neighbour correlations vs fluence.

Error budget: a correlation coefficient from one pair of N pixels has the error 1/sqrt(N) (64 x 64
pixels: 0.016; 5 pairs: 0.007); the nearest-neighbour correlation of a flat grows as
strength x fluence / full well, a few 0.01 at the top of the curve, so on small frames a
quadrant's coefficients carry 10-20 % errors, on full frames (1000 x the pixels) 0.5 %.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..campaign.limits import GenericLimits, limit
from ..formats.geometry import QUADRANTS
from .context import TaskContext
from .family import Family, QuadrantConsumers, ValueSpec
from .figures import markdown_table, new_figure
from .offsets import PreparedData
from .outputs import CsvTable, Outputs, Plot, Section, StagedFile, SubTaskResult
from .ptc import NEAR_SATURATION_ADU, PairedFrames, PTCTask, pairs_from_read, plan_pairs
from .ptc_lib import (
    CLIP_SIGMA,
    CovariancePlan,
    PairCovariance,
    PairCovariances,
    pair_covariance_unit,
    proportional_fit,
)
from .stacking import product_names, provenance_header

MAX_LAG = 4  # vison's Npix 5: lags 0..4
BF_REFERENCE_ADU = 32768.0  # fluence at which the nearest-neighbour correlations are quoted (vison's)
MIN_FLUENCE_ADU = 1.0e3  # columns below carry no measurable brighter-fatter signal


@dataclass(frozen=True)
class BFLimits(GenericLimits):
    pair_fluence_tolerance: float = limit(0.05, "fraction", "largest |f1 - f2| / mean of a pair's fluences")


@dataclass(frozen=True)
class ColumnCovariance:
    """One fluence column of one quadrant, averaged over its pairs."""

    column: int
    mean_adu: float
    covariance: np.ndarray  # [drow, dcol], ADU^2, one frame
    pairs: int
    pixels: int  # per pair (mean)

    @property
    def correlation(self) -> np.ndarray:
        return self.covariance / self.covariance[0, 0]

    @property
    def correlation_error(self) -> float:
        """Statistical error of an off-centre correlation coefficient: 1/sqrt(pixel pairs)."""
        return 1.0 / math.sqrt(max(self.pixels * self.pairs, 1))


@dataclass
class Covariances(SubTaskResult):
    """`extract_COV`: (ccd, quadrant) -> columns in fluence order."""

    columns: dict[tuple[int, str], list[ColumnCovariance]]
    paired: PairedFrames


@dataclass
class QuadrantBF:
    nn_serial_ref: float = math.nan
    nn_parallel_ref: float = math.nan
    nn_serial_ref_err: float = math.nan
    nn_parallel_ref_err: float = math.nan
    kernel: np.ndarray | None = None  # a matrix [drow, dcol] 0..MAX_LAG, 1/e-
    kernel_err: np.ndarray | None = None
    columns_used: int = 0

    def symmetric_kernel(self) -> np.ndarray:
        """The a matrix on lags -MAX_LAG..MAX_LAG (mirror images: the effect is symmetric)."""
        size = 2 * MAX_LAG + 1
        full = np.full((size, size), np.nan)
        if self.kernel is None:
            return full
        for dr in range(-MAX_LAG, MAX_LAG + 1):
            for dc in range(-MAX_LAG, MAX_LAG + 1):
                full[dr + MAX_LAG, dc + MAX_LAG] = self.kernel[abs(dr), abs(dc)]
        return full


@dataclass
class BFKernels(SubTaskResult):
    """`extract_BF`: per (ccd, quadrant) the fitted coefficients and kernel."""

    quadrants: dict[tuple[int, str], QuadrantBF]
    gains: dict[tuple[int, str], float]


@dataclass
class BFProducts(SubTaskResult):
    names: dict[int, str]


class BFTask(PTCTask):
    """prep as PTC's (offsets, pairs); its own covariance and kernel sub-tasks."""

    def extract_COV(self, ctx: TaskContext, paired: PairedFrames) -> Covariances:
        """Each pair's covariances as the check's read computed them (PairCovariances), the others
        read again one unit per pair (pair_covariance_unit): ptc.pairs_from_read."""
        geometry = paired.prepared.geometry
        results = pairs_from_read(ctx, paired, "covariances", pair_covariance_unit,
                                  lambda p: (p.path1, p.path2, p.offsets1, p.offsets2, geometry, MAX_LAG))
        grouped: dict[tuple[int, str, int], list[PairCovariance]] = defaultdict(list)
        for pair, per_quadrant in zip(paired.pairs, results):
            for q, value in per_quadrant.items():
                grouped[(pair.ccd, q, pair.column)].append(value)
        columns: dict[tuple[int, str], list[ColumnCovariance]] = defaultdict(list)
        for (ccd, q, column), values in sorted(grouped.items()):
            measured = [v.covariance for v in values if np.isfinite(v.covariance).all()]
            covariance = np.mean(measured, axis=0) if measured else np.full((MAX_LAG + 1,) * 2, np.nan)
            columns[(ccd, q)].append(ColumnCovariance(column, float(np.mean([v.mean_adu for v in values])), covariance,
                                                      len(measured), int(np.mean([v.pixels for v in values]))))
        for key in columns:
            columns[key].sort(key=lambda c: c.mean_adu)
        return Covariances(dict(columns), paired)

    def extract_BF(self, ctx: TaskContext, covariances: Covariances) -> BFKernels:
        read_noise = read_noise_squared(ctx, covariances.paired.prepared)
        quadrants, gains = {}, {}
        for (ccd, q), columns in sorted(covariances.columns.items()):
            gain, _ = ctx.gain(ccd, q)
            gains[(ccd, q)] = gain
            quadrants[(ccd, q)] = fit_bf(columns, gain, read_noise.get((ccd, q), 0.0))
        return BFKernels(quadrants, gains, outputs=bf_values(ctx, covariances, quadrants, gains))

    def meta(self, ctx: TaskContext, covariances: Covariances, kernels: BFKernels) -> BFProducts:
        return bf_products(ctx, covariances, kernels)


def plan_covariances(ctx: TaskContext, ccd: int, frames: list) -> CovariancePlan | None:
    """QuadrantConsumers.plan: PTC's pairs (ptc.plan_pairs) and the lags measured."""
    pairs = plan_pairs(ctx, ccd, frames)
    return CovariancePlan(pairs, MAX_LAG) if pairs else None


def read_noise_squared(ctx: TaskContext, prepared: PreparedData) -> dict[tuple[int, str], float]:
    """(ccd, quadrant) -> mean over frames of the prescan robust variance (ADU^2)."""
    out = {}
    for ccd, frames in prepared.frames.items():
        for q in QUADRANTS:
            values = [f.stats[q].prescan.std ** 2 for f in frames if math.isfinite(f.stats[q].prescan.std)]
            if values:
                out[(ccd, q)] = float(np.mean(values))
    return out


def fit_bf(columns: list[ColumnCovariance], gain: float, read_noise2: float) -> QuadrantBF:
    """Nearest-neighbour correlations at the reference fluence, and the a matrix (see the module)."""
    result = QuadrantBF()
    usable = [c for c in columns if MIN_FLUENCE_ADU < c.mean_adu < NEAR_SATURATION_ADU
              and np.all(np.isfinite(c.covariance)) and c.covariance[0, 0] > 0]
    result.columns_used = len(usable)
    if len(usable) < 2:
        return result
    mu = np.array([c.mean_adu for c in usable])
    sigma = np.array([c.correlation_error for c in usable])
    for lag, name in (((0, 1), "serial"), ((1, 0), "parallel")):
        rho = np.array([c.correlation[lag] for c in usable])
        a, b, _, _ = proportional_fit(mu, rho, sigma)
        value = a + b * BF_REFERENCE_ADU
        # error at the reference from the fit's covariance
        w = 1.0 / sigma ** 2
        s, sx, sxx = w.sum(), (w * mu).sum(), (w * mu * mu).sum()
        det = s * sxx - sx * sx
        err = math.sqrt((sxx - 2 * BF_REFERENCE_ADU * sx + BF_REFERENCE_ADU ** 2 * s) / det) if det > 0 else math.nan
        setattr(result, f"nn_{name}_ref", value)
        setattr(result, f"nn_{name}_ref_err", err)
    fluence_e = mu * gain
    kernel = np.full((MAX_LAG + 1, MAX_LAG + 1), np.nan)
    errors = np.full_like(kernel, np.nan)
    for dr in range(MAX_LAG + 1):
        for dc in range(MAX_LAG + 1):
            cov = np.array([c.covariance[dr, dc] for c in usable])
            if dr == dc == 0:
                cov = cov - read_noise2
            poisson = mu / gain  # the Poisson variance in ADU^2
            y = cov / poisson
            err_y = sigma * (math.sqrt(2.0) if dr == dc == 0 else 1.0)
            _, slope, _, slope_err = proportional_fit(fluence_e, y, err_y)
            kernel[dr, dc], errors[dr, dc] = slope, slope_err
    result.kernel, result.kernel_err = kernel, errors
    return result


def bf_values(ctx: TaskContext, covariances: Covariances, quadrants: dict[tuple[int, str], QuadrantBF],
              gains: dict[tuple[int, str], float]) -> Outputs:
    out = Outputs()
    sources = set()
    rows = []
    for (ccd, q), bf in sorted(quadrants.items()):
        sources.add(ctx.gain(ccd, q)[1])
        kernel = bf.kernel if bf.kernel is not None else np.full((MAX_LAG + 1, MAX_LAG + 1), np.nan)
        for name, value in (("nn_corr_serial_ref", bf.nn_serial_ref), ("nn_corr_parallel_ref", bf.nn_parallel_ref),
                            ("nn_corr_serial_ref_err", bf.nn_serial_ref_err),
                            ("nn_corr_parallel_ref_err", bf.nn_parallel_ref_err),
                            ("kernel_a00_per_e", kernel[0, 0]), ("kernel_a01_per_e", kernel[0, 1]),
                            ("kernel_a10_per_e", kernel[1, 0]),
                            ("kernel_sum_per_e", float(np.nansum(bf.symmetric_kernel())) if bf.kernel is not None
                             else math.nan),
                            ("bf_columns_used", bf.columns_used), ("gain_e_per_adu_used", gains[(ccd, q)])):
            out.value(name, value, ccd, q)
        rows.append([f"CCD{ccd}", q, f"{bf.nn_serial_ref:.4f} ± {bf.nn_serial_ref_err:.4f}",
                     f"{bf.nn_parallel_ref:.4f} ± {bf.nn_parallel_ref_err:.4f}", f"{kernel[0, 0]:.3e}",
                     f"{kernel[0, 1]:.3e}", f"{kernel[1, 0]:.3e}"])
    out.value("bf_reference_fluence_adu", BF_REFERENCE_ADU)
    out.value("gain_source", "; ".join(sorted(sources)))
    out.value("pairs_used", len(covariances.paired.pairs))
    out.value("pairs_rejected", covariances.paired.rejected)
    out.value("bf_method", (f"covariances of the fluence-scaled pair difference, lags 0..{MAX_LAG}, {CLIP_SIGMA:g}-sigma "
                            "clipped and clip-bias corrected; a matrix = d(C g/mu)/d(mu g)"))
    out.sections.append(Section("Brighter-fatter: covariances and kernel", "\n\n".join([
        f"Nearest-neighbour correlation coefficients at {BF_REFERENCE_ADU:g} ADU (straight-line fit over the "
        f"columns between {MIN_FLUENCE_ADU:g} and {NEAR_SATURATION_ADU:g} ADU), and the a matrix (1/e-): "
        "centre a00 (variance deficit), serial a01, parallel a10.",
        markdown_table(["CCD", "Q", "serial nn corr", "parallel nn corr", "a00", "a01", "a10"], rows),
        f"Gain used: {'; '.join(sorted(sources))}.",
    ])))
    return out


def bf_products(ctx: TaskContext, covariances: Covariances, kernels: BFKernels) -> BFProducts:
    from astropy.io import fits

    out = Outputs()
    prepared = covariances.paired.prepared
    names = product_names(ctx, prepared, "BF")
    table_rows = []
    for ccd, name in names.items():
        frames = [f for f in prepared.frames[ccd] if any(p.ccd == ccd and f.obsid in (p.obsid1, p.obsid2)
                                                          for p in covariances.paired.pairs)]
        header = provenance_header(ctx, ccd, frames, "covariances of fluence-scaled pair differences", "BF")
        header["MAXLAG"] = (MAX_LAG, "largest lag in rows and columns")
        header["CLIPSIG"] = (CLIP_SIGMA, "difference clipped at this many sigmas")
        header["BFREF"] = (BF_REFERENCE_ADU, "fluence of quoted nn correlations (ADU)")
        for q in QUADRANTS:
            header["GAIN_" + q] = (kernels.gains.get((ccd, q), math.nan), f"gain used, quadrant {q} (e-/ADU)")
        hdus: list = [fits.PrimaryHDU(header=header)]
        for q in QUADRANTS:
            columns = covariances.columns.get((ccd, q), [])
            bf = kernels.quadrants.get((ccd, q), QuadrantBF())
            if not columns:
                continue
            cov = np.array([c.covariance for c in columns], np.float64)
            corr = np.array([c.correlation for c in columns], np.float64)
            hdus.append(fits.ImageHDU(cov, name=f"COV_{q}", header=fits.Header([("BUNIT", "ADU2")])))
            hdus.append(fits.ImageHDU(corr, name=f"CORR_{q}"))
            hdus.append(fits.ImageHDU(bf.symmetric_kernel(), name=f"KERNEL_{q}", header=fits.Header([("BUNIT", "1/e-")])))
            hdus.append(fits.BinTableHDU.from_columns([
                fits.Column("COLUMN", "J", array=np.array([c.column + 1 for c in columns])),
                fits.Column("MU_ADU", "D", array=np.array([c.mean_adu for c in columns])),
                fits.Column("VAR_ADU2", "D", array=cov[:, 0, 0]),
                fits.Column("NPAIRS", "J", array=np.array([c.pairs for c in columns])),
                fits.Column("CORR_01", "D", array=corr[:, 0, 1]),
                fits.Column("CORR_10", "D", array=corr[:, 1, 0]),
                fits.Column("CORR_11", "D", array=corr[:, 1, 1]),
            ], name=f"FLUENCES_{q}"))
            for c in columns:
                table_rows.append([f"CCD{ccd}", q, c.column + 1, f"{c.mean_adu:.2f}", f"{c.covariance[0, 0]:.3f}",
                                   f"{c.correlation[0, 1]:.5f}", f"{c.correlation[1, 0]:.5f}",
                                   f"{c.correlation[1, 1]:.5f}", f"{c.correlation_error:.5f}", c.pairs])
        path = ctx.staging_path(name)
        fits.HDUList(hdus).writeto(path, overwrite=True)
        out.files.append(StagedFile(name, path))
    test = ctx.test.name
    out.tables.append(CsvTable(f"{test}_COVTABLE.csv", ("ccd", "quadrant", "column", "mean_adu", "var_adu2", "corr_01",
                                                          "corr_10", "corr_11", "corr_err", "pairs"), table_rows))
    out.plots.append(Plot("nn_correlations", _figure_drawer(test, covariances)))
    out.sections.append(Section("Brighter-fatter products", "\n".join(
        [f"- `products/{name}`: COV_q, CORR_q [column, drow, dcol], KERNEL_q (a matrix on lags -{MAX_LAG}..{MAX_LAG}, "
         "1/e-), FLUENCES_q" for name in names.values()] +
        [f"- `products/{test}_COVTABLE.csv`: per column the mean, variance and the correlations of lags 01, 10, 11"])))
    return BFProducts(names, outputs=out)


def _figure_drawer(test: str, covariances: Covariances):
    def draw():
        if not covariances.columns:
            return None
        figure = new_figure(10, 4)
        for index, (lag, title) in enumerate((((0, 1), "serial neighbour"), ((1, 0), "parallel neighbour"))):
            axes = figure.add_subplot(1, 2, index + 1)
            for (ccd, q), columns in sorted(covariances.columns.items()):
                axes.plot([c.mean_adu for c in columns], [c.correlation[lag] for c in columns], ".-", ms=3, lw=0.6,
                          label=f"CCD{ccd} {q}")
            axes.set_xlabel("mean (ADU)", fontsize=8)
            axes.set_ylabel("correlation coefficient", fontsize=8)
            axes.set_title(title, fontsize=9)
        axes.legend(fontsize=6, ncol=2)
        figure.suptitle(f"{test}: nearest-neighbour correlations vs fluence")
        return figure
    return draw


FAMILY = Family(
    name="bf",
    noise_regions=("prescan",),  # the overscan after an exposed image holds trailed charge, not noise
    summary="BF01/BF01WAVE: pixel covariances and brighter-fatter kernels (on PTC data).",
    subtasks=("init", "check", "prep", "extract_COV", "extract_BF", "meta", "report"),
    task=BFTask,
    limits=BFLimits,
    values=(
        ValueSpec("nn_corr_serial_ref", "", 5, "serial nearest-neighbour correlation at bf_reference_fluence_adu",
                  key=True),
        ValueSpec("nn_corr_parallel_ref", "", 5, "parallel nearest-neighbour correlation at bf_reference_fluence_adu",
                  key=True),
        ValueSpec("nn_corr_serial_ref_err", "", 5, "statistical error of nn_corr_serial_ref"),
        ValueSpec("nn_corr_parallel_ref_err", "", 5, "statistical error of nn_corr_parallel_ref"),
        ValueSpec("kernel_a00_per_e", "1/e-", None, "a matrix centre: variance deficit per electron of fluence"),
        ValueSpec("kernel_a01_per_e", "1/e-", None, "a matrix, serial neighbour"),
        ValueSpec("kernel_a10_per_e", "1/e-", None, "a matrix, parallel neighbour"),
        ValueSpec("kernel_sum_per_e", "1/e-", None, "sum of the a matrix over lags -4..4 (0 if charge is conserved)"),
        ValueSpec("bf_columns_used", "", None, "fluence columns the fits used"),
        ValueSpec("gain_e_per_adu_used", "e-/ADU", None, "gain used for the kernel in electrons"),
        ValueSpec("bf_reference_fluence_adu", "ADU", None, "fluence of the quoted nn correlations", scope="test"),
        ValueSpec("gain_source", "", None, "where the gain came from", scope="test"),
        ValueSpec("pairs_used", "", None, "flat pairs analysed (all CCDs)", scope="test"),
        ValueSpec("pairs_rejected", "", None, "pairs left out for unequal fluences, with both fluences and the limit",
                  scope="test"),
        ValueSpec("bf_method", "", None, "how covariances and kernel were measured", scope="test"),
    ),
    saturation_expected=True,
    needs=("gain",),
    required=("gain",),
    per_quadrant=QuadrantConsumers(plan=plan_covariances, start=PairCovariances, subtasks=("extract_COV",)),
    fits_products=True,
)
TASK = BFTask
