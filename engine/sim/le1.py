"""Simulated LE1 frames of the whole focal plane, with their FPA EXP_LOG and injected truths.

Each quadrant is a bias: its injected offset plus Gaussian read noise, digitised (the same
recipe as render.render_frame for a bias: the noise is scaled so that the digitised frame's std
is the injected RON, quantisation included). Truths per quadrant are drawn from a seed (offsets
2500-2950 ADU, RON 1.0-1.35 ADU: realistic, inside the RON limits) or given, and saved
beside the frames as `LE1_TRUTHS.json`. `marks` adds fixed patterns (hot pixels) at canonical
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

import numpy as np
from astropy.io import fits

from engine.formats.fpa import DEFAULT_DESIGN, FPALayout, FPAQuadrant, fpa_layout
from engine.formats.geometry import CCDGeometry
from engine.formats.le1 import LE1_SMALL, FPAExposure, write_fpa_explog
from engine.formats.names import day_folder_name, format_date_token

TRUTHS_FILE = "LE1_TRUTHS.json"
LE1_GAIN_E_PER_ADU = 3.5  # what the LE1 template writes in each extension's GAIN
OFFSET_RANGE_ADU = (2500.0, 2950.0)
RON_RANGE_ADU = (1.0, 1.35)  # within the RON limits (0.86-1.44) with room for the measurement error
SECONDS_PER_FRAME = 92.0  # a bias: 71.8 s readout plus transfer overhead

QuadrantTruths = dict[str, dict[str, dict[str, float]]]  # C_ji -> quadrant -> {"offset_adu", "ron_adu"}
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


def bias_quadrant(geometry: CCDGeometry, offset_adu: float, ron_adu: float, rng: np.random.Generator) -> np.ndarray:
    """One canonical bias quadrant (uint16): offset + noise whose digitised std is `ron_adu`."""
    noise = rng.standard_normal((geometry.quad_height, geometry.quad_width), dtype=np.float32)
    noise *= np.float32(math.sqrt(max(ron_adu ** 2 - 1.0 / 12.0, 0.0)))
    noise += np.float32(offset_adu)
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
                 program: str = "FPACAMP", marks: Marks | None = None) -> LE1Simulation:
    """Write `frames` LE1 bias frames of `test` into a day folder under `out`, their FPA EXP_LOG
    and the truths; refuses to overwrite an existing log or frame. `marks`: ADU added at canonical
    (row, column) of the named extensions in every frame (clipped to the ADC range)."""
    layout = fpa_layout(design)
    marks = {name: [(int(r), int(c), float(a)) for r, c, a in spots] for name, spots in (marks or {}).items()}
    for name, spots in marks.items():
        layout.by_extname(name)  # KeyError naming what an extension name looks like
        for row, col, _ in spots:
            if not (0 <= row < geometry.quad_height and 0 <= col < geometry.quad_width):
                raise ValueError(f"mark ({row}, {col}) of {name} is outside the {geometry.quad_height} x "
                                 f"{geometry.quad_width} quadrant")
    quadrant_truths: QuadrantTruths = dict(truths) if truths is not None else draw_quadrant_truths(seed, design)
    day = Path(out) / day_folder_name(start)
    day.mkdir(parents=True, exist_ok=True)
    explog = day / f"EXP_LOG_{start:%d%m%y}.txt"
    if explog.exists():
        raise FileExistsError(f"{explog} exists; not overwriting it")
    rng = np.random.default_rng([seed, 0x1E2])
    exposures, paths = [], []
    for n in range(frames):
        obsid = first_obsid + n
        when = start + timedelta(seconds=n * SECONDS_PER_FRAME)
        name = f"VIS_SIM_{format_date_token(when)}_{obsid:05d}.mosaic.L1"

        def quadrant(place: FPAQuadrant) -> np.ndarray:
            truth = quadrant_truths[place.ccd.ccdid][place.quadrant]
            data = bias_quadrant(geometry, truth["offset_adu"], truth["ron_adu"], rng)
            for row, col, adu in marks.get(place.extname, ()):
                data[row, col] = np.clip(float(data[row, col]) + adu, 0, 65535)
            return data

        paths.append(write_le1_frame(day / f"{name}.fits", quadrant, geometry, layout=layout,
                                     date_obs=when.isoformat(timespec="seconds"), seqid=obsid))
        exposures.append(FPAExposure(obsid, name, format_date_token(when), program, test, n + 2))
    truths_file = day / TRUTHS_FILE
    truths_file.write_text(json.dumps({"seed": seed, "design": design, "geometry": geometry.name,
                                       "units": "ADU", "ccds": quadrant_truths,
                                       "marks": {name: [list(spot) for spot in spots] for name, spots in marks.items()}},
                                      indent=1) + "\n")
    write_fpa_explog(explog, exposures)
    return LE1Simulation(day, explog, paths, truths_file, quadrant_truths, [e.obsid for e in exposures])
