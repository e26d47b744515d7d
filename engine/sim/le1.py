"""Simulated LE1 frames of the whole focal plane, with their FPA EXP_LOG and injected truths.

Each quadrant is a bias: its injected offset plus Gaussian read noise, digitised (the same
recipe as render.render_frame for a bias: the noise is scaled so that the digitised frame's std
is the injected RON, quantisation included). Truths per quadrant are drawn from a seed (offsets
2500-2950 ADU, RON 1.0-1.35 ADU: realistic, inside the RON limits) or given, and saved
beside the frames as `LE1_TRUTHS.json`. A dark (exposure time > 0: DARK01's 565 s by default)
adds to the image area its quadrant's dark current (1-10 e-/pix/h) and hot pixels (a few per
quadrant, 1-50 e-/s, also collected while their row waits to be read), with shot noise, divided
by the LE1 gain (the block simulator's recipe, render.py); those truths are drawn from their own
random stream, so a seed gives the same offsets and RON whatever the test. `marks` adds fixed patterns (hot pixels) at canonical
pixels of chosen extensions, the same in every frame: what a master bias must keep in place.

Frames are written extension by extension (header, then the quadrant's bytes), never the whole
file in memory: a full-size frame (LE1_FULL) is 1.3 GB, a small one (LE1_SMALL, the tests')
2.5 MB (headers mostly). Each extension stores the canonical quadrant flipped as the LE1 layout says.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from engine.formats.fpa import DEFAULT_DESIGN, FPALayout, FPAQuadrant, fpa_layout
from engine.formats.geometry import CCDGeometry
from engine.formats.le1 import LE1_SMALL, FPAExposure, write_fpa_explog
from engine.formats.names import day_folder_name, format_date_token
from engine.sim.effects import shot_noise
from engine.sim.truths import ROW_READ_TIME_S

TRUTHS_FILE = "LE1_TRUTHS.json"
LE1_GAIN_E_PER_ADU = 3.5  # what the LE1 template writes in each extension's GAIN
OFFSET_RANGE_ADU = (2500.0, 2950.0)
RON_RANGE_ADU = (1.0, 1.35)  # within the RON limits (0.86-1.44) with room for the measurement error
SECONDS_PER_FRAME = 92.0  # a bias: 71.8 s readout plus transfer overhead
DARK_EXPTIME_S = 565.0  # DARK01's exposure
DARK_RANGE_E_PER_PIX_PER_HOUR = (1.0, 10.0)
HOT_RATE_RANGE_E_PER_S = (1.0, 50.0)  # log-uniform, as the block simulator's hot pixels
HOT_PIXELS_PER_QUADRANT = 4  # in a dark, by default

# C_ji -> quadrant -> {"offset_adu", "ron_adu", "dark_e_per_pix_per_hour", "hot_pixels": [[row, col, e-/s]]}
QuadrantTruths = dict[str, dict[str, dict[str, Any]]]
Marks = Mapping[str, Sequence[tuple[int, int, float]]]  # extension name -> canonical (row, column, ADU added)


def draw_quadrant_truths(seed: int, design: str = DEFAULT_DESIGN) -> QuadrantTruths:
    """Offset and RON of each of the 144 quadrants, reproducible from `seed`."""
    rng = np.random.default_rng([seed, 0x1E1])
    truths: QuadrantTruths = {}
    for place in fpa_layout(design).quadrants:
        truths.setdefault(place.ccd.ccdid, {})[place.quadrant] = {
            "offset_adu": round(float(rng.uniform(*OFFSET_RANGE_ADU)), 3),
            "ron_adu": round(float(rng.uniform(*RON_RANGE_ADU)), 4),
        }
    return truths


def draw_dark_truths(seed: int, geometry: CCDGeometry = LE1_SMALL, design: str = DEFAULT_DESIGN,
                     hot_pixels: int = HOT_PIXELS_PER_QUADRANT) -> QuadrantTruths:
    """Dark current and `hot_pixels` hot pixels (canonical row, column of the image area, e-/s) of
    each quadrant, reproducible from `seed` (a stream of their own: the offsets and RON stay)."""
    rng = np.random.default_rng([seed, 0x1E3])
    truths: QuadrantTruths = {}
    image = geometry.image_rows * geometry.image_cols
    low, high = np.log(HOT_RATE_RANGE_E_PER_S)
    for place in fpa_layout(design).quadrants:
        dark = round(float(rng.uniform(*DARK_RANGE_E_PER_PIX_PER_HOUR)), 4)
        where = rng.choice(image, size=min(hot_pixels, image), replace=False)
        rates = np.exp(rng.uniform(low, high, where.size))
        hot = sorted([int(k // geometry.image_cols), int(k % geometry.image_cols) + geometry.prescan, round(float(r), 3)]
                     for k, r in zip(where, rates))
        truths.setdefault(place.ccd.ccdid, {})[place.quadrant] = {"dark_e_per_pix_per_hour": dark, "hot_pixels": hot}
    return truths


def dark_signal_adu(geometry: CCDGeometry, truth: Mapping[str, Any], exptime: float, gain: float,
                    rng: np.random.Generator) -> np.ndarray:
    """The image area's dark signal (ADU, float32): dark current and hot pixels, shot noise."""
    expected = np.full((geometry.image_rows, geometry.image_cols),
                       truth.get("dark_e_per_pix_per_hour", 0.0) * exptime / 3600.0, np.float32)
    for row, col, rate in truth.get("hot_pixels", ()):
        expected[row, col - geometry.prescan] += rate * (exptime + row * ROW_READ_TIME_S)
    electrons = shot_noise(expected, rng)
    return electrons / np.float32(gain)


def bias_quadrant(geometry: CCDGeometry, offset_adu: float, ron_adu: float, rng: np.random.Generator,
                  signal_adu: np.ndarray | None = None) -> np.ndarray:
    """One canonical bias quadrant (uint16): offset + noise whose digitised std is `ron_adu`
    (+ `signal_adu` over the image area, before digitisation)."""
    noise = rng.standard_normal((geometry.quad_height, geometry.quad_width), dtype=np.float32)
    noise *= np.float32(math.sqrt(max(ron_adu ** 2 - 1.0 / 12.0, 0.0)))
    noise += np.float32(offset_adu)
    if signal_adu is not None:
        noise[geometry.canonical_region("image")] += signal_adu
    np.rint(noise, out=noise)
    np.clip(noise, 0, 65535, out=noise)
    return noise.astype(np.uint16)


def write_le1_frame(path: str | os.PathLike[str], quadrant_of: Callable[[FPAQuadrant], np.ndarray],
                    geometry: CCDGeometry, *, layout: FPALayout | None = None, exptime: float = 0.0,
                    date_obs: str = "", seqid: int = 0, overwrite: bool = False) -> Path:
    """Write an LE1 frame: `quadrant_of(place)` gives each canonical quadrant (uint16), called
    once per extension in HDU order; written atomically (temporary name, then rename)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; not overwriting it")
    layout = layout or fpa_layout(DEFAULT_DESIGN)
    primary = fits.PrimaryHDU().header
    primary["BUNIT"] = "ADU"
    primary["RA"] = 0.0
    primary["DEC"] = 0.0
    primary["DATE-OBS"] = date_obs
    primary["SEQID"] = seqid
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(primary.tostring().encode("ascii"))
            for place in layout.quadrants:
                canonical = quadrant_of(place)
                if canonical.dtype != np.uint16 or canonical.shape != (geometry.quad_height, geometry.quad_width):
                    raise ValueError(f"quadrant {place.extname}: expected uint16 {geometry.quad_height} x "
                                     f"{geometry.quad_width}, got {canonical.dtype} {canonical.shape}")
                stored = canonical[:: -1 if place.flip_rows else 1, :: -1 if place.flip_cols else 1]
                raw = (stored ^ np.uint16(0x8000)).view(np.int16).astype(">i2")
                header = fits.ImageHDU(data=np.zeros((1, 1), np.int16)).header  # XTENSION, BITPIX 16, NAXIS 2
                header["NAXIS1"], header["NAXIS2"] = geometry.quad_width, geometry.quad_height
                for key, value in (("BZERO", 32768), ("BSCALE", 1), ("EXTNAME", place.extname),
                                   ("EXPTIME", exptime), ("CCDID", f"{place.ccd.slice}-{place.ccd.column}"),
                                   ("QUADID", place.quadrant), ("PRESCANX", geometry.prescan),
                                   ("OVRSCANX", geometry.overscan), ("GAIN", LE1_GAIN_E_PER_ADU),
                                   ("WCSAXES", 2), ("INSTRUME", "EUCLID-VIS")):
                    header[key] = value
                handle.write(header.tostring().encode("ascii"))
                data = raw.tobytes()
                handle.write(data + b"\0" * (-len(data) % 2880))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class LE1Simulation:
    day_folder: Path
    explog: Path
    frames: list[Path]
    truths_file: Path
    truths: QuadrantTruths
    obsids: list[int]


def simulate_le1(out: str | os.PathLike[str], *, test: str = "BIAS01", frames: int = 10, seed: int = 1,
                 geometry: CCDGeometry = LE1_SMALL, design: str = DEFAULT_DESIGN, first_obsid: int = 1000,
                 start: datetime = datetime(2019, 12, 2, 9, 0, 0), truths: Mapping | None = None,
                 program: str = "FPACAMP", marks: Marks | None = None, exptime: float | None = None,
                 hot_pixels: int | None = None) -> LE1Simulation:
    """Write `frames` LE1 frames of `test` into a day folder under `out`, their FPA EXP_LOG and
    the truths; refuses to overwrite an existing log or frame. `exptime` (s): None gives DARK01's
    565 s to a DARK test, 0 (biases) otherwise; with an exposure time the frames are darks, with
    `hot_pixels` hot pixels per quadrant (default HOT_PIXELS_PER_QUADRANT; biases 0 by default).
    `marks`: ADU added at canonical (row, column) of the named extensions in every frame
    (clipped to the ADC range)."""
    if exptime is None:
        exptime = DARK_EXPTIME_S if test.upper().startswith("DARK") else 0.0
    if hot_pixels is None:
        hot_pixels = HOT_PIXELS_PER_QUADRANT if exptime > 0 else 0
    layout = fpa_layout(design)
    marks = {name: [(int(r), int(c), float(a)) for r, c, a in spots] for name, spots in (marks or {}).items()}
    for name, spots in marks.items():
        layout.by_extname(name)  # KeyError naming what an extension name looks like
        for row, col, _ in spots:
            if not (0 <= row < geometry.quad_height and 0 <= col < geometry.quad_width):
                raise ValueError(f"mark ({row}, {col}) of {name} is outside the {geometry.quad_height} x "
                                 f"{geometry.quad_width} quadrant")
    quadrant_truths: QuadrantTruths = dict(truths) if truths is not None else draw_quadrant_truths(seed, design)
    dark_truths = draw_dark_truths(seed, geometry, design, hot_pixels)
    quadrant_truths = {ccdid: {q: {**dark_truths[ccdid][q], **truth} for q, truth in quads.items()}
                       for ccdid, quads in quadrant_truths.items()}
    exposed = exptime > 0 or hot_pixels > 0
    day = Path(out) / day_folder_name(start)
    day.mkdir(parents=True, exist_ok=True)
    explog = day / f"EXP_LOG_{start:%d%m%y}.txt"
    if explog.exists():
        raise FileExistsError(f"{explog} exists; not overwriting it")
    rng = np.random.default_rng([seed, 0x1E2])
    exposures, paths = [], []
    for n in range(frames):
        obsid = first_obsid + n
        when = start + timedelta(seconds=n * (SECONDS_PER_FRAME + exptime))
        name = f"VIS_SIM_{format_date_token(when)}_{obsid:05d}.mosaic.L1"

        def quadrant(place: FPAQuadrant) -> np.ndarray:
            truth = quadrant_truths[place.ccd.ccdid][place.quadrant]
            signal = dark_signal_adu(geometry, truth, exptime, LE1_GAIN_E_PER_ADU, rng) if exposed else None
            data = bias_quadrant(geometry, truth["offset_adu"], truth["ron_adu"], rng, signal)
            for row, col, adu in marks.get(place.extname, ()):
                data[row, col] = np.clip(float(data[row, col]) + adu, 0, 65535)
            return data

        paths.append(write_le1_frame(day / f"{name}.fits", quadrant, geometry, layout=layout, exptime=exptime,
                                     date_obs=when.isoformat(timespec="seconds"), seqid=obsid))
        exposures.append(FPAExposure(obsid, name, format_date_token(when), program, test, n + 2))
    truths_file = day / TRUTHS_FILE
    truths_file.write_text(json.dumps({"seed": seed, "design": design, "geometry": geometry.name, "test": test,
                                       "exptime_s": exptime, "gain_e_per_adu": LE1_GAIN_E_PER_ADU,
                                       "units": "ADU (offset, RON), e-/pix/h (dark current), canonical row, "
                                                "column and e-/s (hot pixels)", "ccds": quadrant_truths,
                                       "marks": {name: [list(spot) for spot in spots] for name, spots in marks.items()}},
                                      indent=1) + "\n")
    write_fpa_explog(explog, exposures)
    return LE1Simulation(day, explog, paths, truths_file, quadrant_truths, [e.obsid for e in exposures])
