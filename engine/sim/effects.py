"""Detector effects as functions over float32 arrays of electrons (canonical quadrant orientation).

Each function does one physical thing to a charge map; `render.py` decides which apply and in
what order. Rows grow away from the serial register and columns away from the output node, so
"later in the readout" means a higher index on either axis.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

F32 = np.float32


def shot_noise(expected_e: np.ndarray, rng: np.random.Generator, gaussian_above: float = 100.0) -> np.ndarray:
    """Photon/shot noise on a map of mean electrons.

    Exact Poisson where the mean is small; above `gaussian_above` the Gaussian limit (same mean
    and variance) is indistinguishable and several times faster on a 17-Mpixel frame.
    """
    top = float(expected_e.max(initial=0.0))
    if top <= 0.0:
        return expected_e.copy()
    if top < gaussian_above:
        out = expected_e.copy()
        lit = expected_e > 0
        out[lit] = rng.poisson(expected_e[lit]).astype(F32)
        return out
    out = rng.standard_normal(expected_e.shape, dtype=F32)
    out *= np.sqrt(np.maximum(expected_e, 0, dtype=F32))
    out += expected_e
    low = (expected_e > 0) & (expected_e < gaussian_above)
    if low.any():
        out[low] = rng.poisson(expected_e[low]).astype(F32)
    return out


def brighter_fatter(charge: np.ndarray, strength: float, full_well: float) -> np.ndarray:
    """Charge exchanged between nearest neighbours, in proportion to their difference and level.

    A pixel that collected more than its neighbours pushes part of the excess into them, the more
    so the fuller the pair: flats gain a nearest-neighbour correlation of about
    strength * level / full_well and lose variance; bright spots grow fatter. Charge is conserved.
    """
    level = np.minimum(charge, F32(full_well))
    k = F32(0.25 * strength / full_well)
    out = charge.copy()
    for axis in (0, 1):
        lo = [slice(None), slice(None)]
        hi = [slice(None), slice(None)]
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        flow = level[hi] + level[lo]
        flow *= charge[hi] - charge[lo]
        flow *= k
        out[lo] += flow
        out[hi] -= flow
    return out


def trail(charge: np.ndarray, fraction: float, e_fold: float, axis: int, start: int = 0) -> None:
    """Charge transfer inefficiency: `fraction` of each pixel's charge ends up in the pixels read
    after it along `axis`, with an exponential profile of e-folding `e_fold` pixels. In place.

    Only targets from index `start` on are updated: starting at an overscan edge gives the
    overscan tail without touching a uniform image, where trailing changes nothing visible.
    """
    view = np.moveaxis(charge, axis, 0)
    n = view.shape[0]
    if start >= n or fraction <= 0:
        return
    taps = int(math.ceil(5 * e_fold)) + 1
    weights = np.exp(-np.arange(taps) / e_fold)
    weights = (weights / weights.sum()).astype(F32)
    tail = np.zeros_like(view[start:])
    for j, weight in enumerate(weights, start=1):
        first = max(start, j)
        if first >= n:
            break
        tail[first - start :] += weight * view[first - j : n - j]
    if start == 0:
        view *= F32(1 - fraction)
    view[start:] += F32(fraction) * tail


def injected_rows(image_rows: int, on: int, off: int) -> np.ndarray:
    """Rows (canonical, from row 0) that an on/off injection cycle fills."""
    rows = np.arange(image_rows)
    if on <= 0:
        return np.zeros(image_rows, dtype=bool)
    if off <= 0:
        return np.ones(image_rows, dtype=bool)
    return (rows % (on + off)) < on


def add_gaussian_spot(
    charge: np.ndarray, row: float, col: float, sigma: float, total_e: float, rows: slice, cols: slice
) -> None:
    """Add a pixel-integrated circular Gaussian of `total_e` electrons, clipped to rows x cols."""
    half = int(math.ceil(5 * sigma)) + 2
    r0, r1 = max(int(row) - half, rows.start), min(int(row) + half + 1, rows.stop)
    c0, c1 = max(int(col) - half, cols.start), min(int(col) + half + 1, cols.stop)
    if r0 >= r1 or c0 >= c1:
        return
    profile_r = _integrated_gaussian(np.arange(r0, r1 + 1) - 0.5, row, sigma)
    profile_c = _integrated_gaussian(np.arange(c0, c1 + 1) - 0.5, col, sigma)
    charge[r0:r1, c0:c1] += (total_e * np.outer(profile_r, profile_c)).astype(F32)


def _integrated_gaussian(edges: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    cdf = 0.5 * erf((edges - centre) / (math.sqrt(2.0) * sigma))
    return np.diff(cdf)


def pump_vertical(
    image: np.ndarray, rows: np.ndarray, cols: np.ndarray, amplitude_e: np.ndarray, polarity: np.ndarray
) -> None:
    """Trap-pumping dipoles: each trap moves charge from its pixel into the row above (+1) or below (-1).

    A trap cannot pump more than it finds: the amplitude is capped at half the pixel's charge.
    """
    moved = np.minimum(amplitude_e, 0.5 * np.maximum(image[rows, cols], 0)).astype(F32)
    np.add.at(image, (rows, cols), -moved)
    np.add.at(image, (rows + polarity, cols), moved)


def pump_serial(image: np.ndarray, cols: np.ndarray, amplitude_e: np.ndarray, polarity: np.ndarray) -> None:
    """Serial-register traps pump every line read: a dipole along the row, in every row, at `cols`."""
    for col, amplitude, sign in zip(cols, amplitude_e, polarity):
        moved = np.minimum(F32(amplitude), 0.5 * np.maximum(image[:, col], 0))
        image[:, col] -= moved
        image[:, col + sign] += moved


def cosmic_ray_hits(
    rng: np.random.Generator,
    count: int,
    shape: tuple[int, int],
    mean_length_px: float = 3.0,
    median_e: float = 3000.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (rows, cols) and electrons of `count` straight cosmic-ray tracks in an image.

    Ground-level muons cross the 40-um-thick silicon at random angles: short tracks (exponential
    length) depositing a few thousand electrons (log-normal), shared evenly along the track.
    """
    if count <= 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, np.zeros(0, dtype=F32)
    start_r = rng.uniform(0, shape[0], count)
    start_c = rng.uniform(0, shape[1], count)
    angle = rng.uniform(0, 2 * math.pi, count)
    length = rng.exponential(mean_length_px, count)
    energy = median_e * np.exp(0.5 * rng.standard_normal(count))
    samples = np.maximum(1, np.ceil(2 * length)).astype(np.intp)
    track = np.repeat(np.arange(count), samples)
    # Position of each sample along its track, 0..1.
    offsets = np.arange(track.size) - np.repeat(np.cumsum(samples) - samples, samples)
    along = (offsets + 0.5) / samples[track]
    rows = np.clip(start_r[track] + along * length[track] * np.sin(angle[track]), 0, shape[0] - 1).astype(np.intp)
    cols = np.clip(start_c[track] + along * length[track] * np.cos(angle[track]), 0, shape[1] - 1).astype(np.intp)
    electrons = (energy[track] / samples[track]).astype(F32)
    return rows, cols, electrons
