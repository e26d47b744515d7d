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

A test whose catalogue structure is flats (PTC01, FLAT01) gets flat frames: its columns (fluences and
frames per column) come from the catalogue's test definition (campaign/catalogue.py, with the
default chamber's exposure times), optionally its first `fluences` columns and at most `frames`
frames each. Each CCD of each frame is drawn by the block simulator's renderer (render.render_frame:
flat lamp x PRNU, shot noise, brighter-fatter, full well, non-linearity, gain, cosmic rays, CTI)
from the block simulator's truths of that seed, with each quadrant's offset, RON, dark current
and gain replaced by the LE1 truths (gains 3.2-3.4 e-/ADU from their own stream, or given) and no
cosmetics but the LE1 truths' hot, dead and low-response pixels (dead ones by default only in
flat-family tests); the PRNU map is the block simulator's for the seed (its rms written in the
truths, or given); then cut into its four canonical quadrants. A CCD is
drawn afresh for each frame, so no persistence carries from one frame to the next.

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

from engine.campaign.catalogue import TestDefinition, UnknownTestError, resolve_test
from engine.campaign.chamber import load_chamber
from engine.formats.fpa import DEFAULT_DESIGN, FPALayout, FPAQuadrant, fpa_layout
from engine.formats.geometry import CCDGeometry
from engine.formats.le1 import LE1_SMALL, FPAExposure, write_fpa_explog
from engine.formats.names import day_folder_name, format_date_token
from engine.sim.effects import shot_noise
from engine.sim.elvis import TFWC_FLAT_SIGNAL_E
from engine.sim.render import CCDState, Exposure, render_frame
from engine.sim.truths import ROW_READ_TIME_S, SimOptions, Truths, draw_truths

TRUTHS_FILE = "LE1_TRUTHS.json"
LE1_GAIN_E_PER_ADU = 3.5  # what the LE1 template writes in each extension's GAIN
OFFSET_RANGE_ADU = (2500.0, 2950.0)
RON_RANGE_ADU = (1.0, 1.35)  # within the RON limits (0.86-1.44) with room for the measurement error
SECONDS_PER_FRAME = 92.0  # a bias: 71.8 s readout plus transfer overhead
DARK_EXPTIME_S = 565.0  # DARK01's exposure
DARK_RANGE_E_PER_PIX_PER_HOUR = (1.0, 10.0)
HOT_RATE_RANGE_E_PER_S = (1.0, 50.0)  # log-uniform, as the block simulator's hot pixels
HOT_PIXELS_PER_QUADRANT = 4  # in a dark, by default
GAIN_RANGE_E_PER_ADU = (3.2, 3.4)  # inside the PTC gain limits (3.1-3.5) with room for the measurement error
DEAD_PIXELS_PER_QUADRANT = 3  # in a flat test (FLAT01...), by default; as many low-response pixels
LOW_RESPONSE_RANGE = (0.3, 0.6)  # relative response of a low-response pixel: well inside COSMETICS00's (0.1, 0.75)
BIAS_FRAMES = 10  # frames of a bias or dark when not said

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


def draw_gain_truths(seed: int, design: str = DEFAULT_DESIGN) -> QuadrantTruths:
    """The gain of each quadrant, reproducible from `seed` (a stream of its own)."""
    rng = np.random.default_rng([seed, 0x1E4])
    return {ccdid: {q: {"gain_e_per_adu": round(float(rng.uniform(*GAIN_RANGE_E_PER_ADU)), 4)} for q in quads}
            for ccdid, quads in _places_by_ccd(design).items()}


def draw_defect_truths(seed: int, geometry: CCDGeometry = LE1_SMALL, design: str = DEFAULT_DESIGN,
                       dead_pixels: int = DEAD_PIXELS_PER_QUADRANT) -> QuadrantTruths:
    """`dead_pixels` dead pixels (canonical row, column of the image area) and as many low-response
    pixels (row, column, relative response) of each quadrant, all distinct, reproducible from
    `seed` (a stream of their own)."""
    rng = np.random.default_rng([seed, 0x1E5])
    image = geometry.image_rows * geometry.image_cols
    truths: QuadrantTruths = {}
    for place in fpa_layout(design).quadrants:
        where = rng.choice(image, size=min(2 * dead_pixels, image), replace=False)
        pixels = [[int(k // geometry.image_cols), int(k % geometry.image_cols) + geometry.prescan] for k in where]
        responses = rng.uniform(*LOW_RESPONSE_RANGE, len(pixels[dead_pixels:]))
        truths.setdefault(place.ccd.ccdid, {})[place.quadrant] = {
            "dead_pixels": sorted(pixels[:dead_pixels]),
            "low_response_pixels": sorted([*pixel, round(float(r), 3)] for pixel, r in zip(pixels[dead_pixels:], responses))}
    return truths


def _places_by_ccd(design: str) -> dict[str, list[str]]:
    by_ccd: dict[str, list[str]] = {}
    for place in fpa_layout(design).quadrants:
        by_ccd.setdefault(place.ccd.ccdid, []).append(place.quadrant)
    return by_ccd


def flat_structure(test: str) -> TestDefinition | None:
    """The catalogue's definition of `test` when its frames are flats (PTC01), else None."""
    try:
        definition = resolve_test(test)
    except UnknownTestError:
        return None
    columns = definition.columns(load_chamber())
    if columns and all(c.values.get("source") == "flat" and int(c.values.get("shuttr", 0)) == 1 for c in columns):
        return definition
    return None


@dataclass(frozen=True)
class FlatExposure:
    exptime: float  # s
    flat_e_per_s: float  # the lamp's electrons per pixel per second at the column's filter
    column: int  # 0-based column of the test's structure


def flat_exposures(definition: TestDefinition, fluences: int | None = None,
                   frames: int | None = None) -> list[FlatExposure]:
    """The test's flats in acquisition order: its first `fluences` columns (all: None), at most
    `frames` frames of each (the structure's: None), exposure times of the default chamber."""
    chamber = load_chamber()
    exposures = []
    for index, column in enumerate(definition.columns(chamber)[:fluences]):
        nm = chamber.wavelength(int(column.values["wave"]))
        # the block simulator's lamp (elvis._physical_exposure): TFWC_FLAT_SIGNAL_E in tFWC_flat
        rate = TFWC_FLAT_SIGNAL_E / chamber.tfwc_flat[nm]
        exposures += [FlatExposure(float(column.values["exptime"]), rate, index)] * min(column.frames, frames or column.frames)
    return exposures


class FlatRenderer:
    """Flat LE1 quadrants drawn by the block simulator's renderer, one CCD at a time: the CCD of
    the quadrant asked is drawn once for its four quadrants (write_le1_frame asks in HDU order)."""

    def __init__(self, seed: int, geometry: CCDGeometry, design: str, truths: QuadrantTruths):
        layout = fpa_layout(design)
        self.numbers = {ccdid: n for n, ccdid in enumerate(_places_by_ccd(design), start=1)}
        block = draw_truths(seed, geometry, {n: layout.ccd(ccdid).serial for ccdid, n in self.numbers.items()},
                            options=SimOptions(persistence=False))
        for ccdid, n in self.numbers.items():
            ccd = block.ccds[n]
            for q, quadrant in ccd.quadrants.items():
                truth = truths[ccdid][q]
                quadrant.offset_adu, quadrant.ron_adu = truth["offset_adu"], truth["ron_adu"]
                quadrant.gain_e_per_adu = truth["gain_e_per_adu"]
                quadrant.dark_e_per_pix_per_hour = truth.get("dark_e_per_pix_per_hour", 0.0)
                quadrant.prnu_rms = truth.get("prnu_rms", quadrant.prnu_rms)
                ccd.hot_pixels[q] = [tuple(h) for h in truth.get("hot_pixels", ())]
                ccd.dead_pixels[q] = [tuple(p) for p in truth.get("dead_pixels", ())]
                ccd.cold_pixels[q] = [tuple(p) for p in truth.get("low_response_pixels", ())]
                ccd.bad_columns[q] = []
        self.block: Truths = block
        self.seed, self.geometry = seed, geometry
        self.drawn: tuple[tuple[int, str], np.ndarray] | None = None

    def prnu_rms(self, ccdid: str, quadrant: str) -> float:
        """The PRNU (rms of the response map, relative) the renderer gives a quadrant."""
        return self.block.ccds[self.numbers[ccdid]].quadrants[quadrant].prnu_rms

    def quadrant(self, place: FPAQuadrant, obsid: int, exposure: FlatExposure) -> np.ndarray:
        key = (obsid, place.ccd.ccdid)
        if self.drawn is None or self.drawn[0] != key:
            n = self.numbers[place.ccd.ccdid]
            lamp = Exposure(exptime=exposure.exptime, shutter=True, source="flat", flat_e_per_s=exposure.flat_e_per_s)
            rng = np.random.default_rng([self.seed, obsid, n])
            self.drawn = key, render_frame(self.geometry, lamp, self.block.ccds[n], self.block, rng, CCDState())
        return np.ascontiguousarray(self.geometry.quadrant(self.drawn[1], place.quadrant, canonical=True))


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


def simulate_le1(out: str | os.PathLike[str], *, test: str = "BIAS01", frames: int | None = None, seed: int = 1,
                 geometry: CCDGeometry = LE1_SMALL, design: str = DEFAULT_DESIGN, first_obsid: int = 1000,
                 start: datetime = datetime(2019, 12, 2, 9, 0, 0), truths: Mapping | None = None,
                 program: str = "FPACAMP", marks: Marks | None = None, exptime: float | None = None,
                 hot_pixels: int | None = None, fluences: int | None = None,
                 dead_pixels: int | None = None) -> LE1Simulation:
    """Write LE1 frames of `test` into a day folder under `out`, their FPA EXP_LOG and the
    truths; refuses to overwrite an existing log or frame. Biases and darks: `frames` frames
    (default BIAS_FRAMES); `exptime` (s): None gives DARK01's 565 s to a DARK test, 0 (biases)
    otherwise; with an exposure time the frames are darks, with `hot_pixels` hot pixels per
    quadrant (default HOT_PIXELS_PER_QUADRANT; biases 0 by default). A flat test (PTC01): its
    catalogue structure, the first `fluences` columns, at most `frames` frames a column, gains
    per quadrant from the seed (or `truths`' gain_e_per_adu), no hot pixels unless asked; the PRNU
    of each quadrant is the block simulator's for the seed (or `truths`' prnu_rms), written in the
    truths. A flat-family test (FLAT01) also gets `dead_pixels` dead and as many low-response pixels
    a quadrant (default DEAD_PIXELS_PER_QUADRANT; other tests 0).
    `marks`: ADU added at canonical (row, column) of the named extensions in every frame
    (clipped to the ADC range)."""
    structure = flat_structure(test)
    if structure is not None:
        flats = flat_exposures(structure, fluences, frames)
        exptime = None
        frames = len(flats)
        hot_pixels = hot_pixels or 0
        if dead_pixels is None:
            dead_pixels = DEAD_PIXELS_PER_QUADRANT if structure.family == "flat" else 0
    else:
        flats = []
        frames = BIAS_FRAMES if frames is None else frames
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
    gain_truths = draw_gain_truths(seed, design) if flats else {}
    defect_truths = draw_defect_truths(seed, geometry, design, dead_pixels) if flats and dead_pixels else {}
    quadrant_truths = {ccdid: {q: {**dark_truths[ccdid][q], **gain_truths.get(ccdid, {}).get(q, {}),
                                   **defect_truths.get(ccdid, {}).get(q, {}), **truth}
                               for q, truth in quads.items()} for ccdid, quads in quadrant_truths.items()}
    exposed = not flats and (exptime > 0 or hot_pixels > 0)
    renderer = FlatRenderer(seed, geometry, design, quadrant_truths) if flats else None
    if renderer is not None:  # the PRNU each quadrant is drawn with
        for ccdid, quads in quadrant_truths.items():
            for q, truth in quads.items():
                truth["prnu_rms"] = round(renderer.prnu_rms(ccdid, q), 6)
    day = Path(out) / day_folder_name(start)
    day.mkdir(parents=True, exist_ok=True)
    explog = day / f"EXP_LOG_{start:%d%m%y}.txt"
    if explog.exists():
        raise FileExistsError(f"{explog} exists; not overwriting it")
    rng = np.random.default_rng([seed, 0x1E2])
    exposures, paths = [], []
    when = start
    for n in range(frames):
        obsid = first_obsid + n
        flat = flats[n] if flats else None
        frame_exptime = flat.exptime if flat is not None else exptime
        name = f"VIS_SIM_{format_date_token(when)}_{obsid:05d}.mosaic.L1"

        def quadrant(place: FPAQuadrant, flat: FlatExposure | None = flat, obsid: int = obsid) -> np.ndarray:
            if renderer is not None and flat is not None:
                data = renderer.quadrant(place, obsid, flat)
            else:
                truth = quadrant_truths[place.ccd.ccdid][place.quadrant]
                signal = dark_signal_adu(geometry, truth, exptime, LE1_GAIN_E_PER_ADU, rng) if exposed else None
                data = bias_quadrant(geometry, truth["offset_adu"], truth["ron_adu"], rng, signal)
            for row, col, adu in marks.get(place.extname, ()):
                data[row, col] = np.clip(float(data[row, col]) + adu, 0, 65535)
            return data

        paths.append(write_le1_frame(day / f"{name}.fits", quadrant, geometry, layout=layout, exptime=frame_exptime,
                                     date_obs=when.isoformat(timespec="seconds"), seqid=obsid))
        exposures.append(FPAExposure(obsid, name, format_date_token(when), program, test, n + 2))
        when += timedelta(seconds=SECONDS_PER_FRAME + frame_exptime)
    truths_file = day / TRUTHS_FILE
    fluence_columns = [{"column": f.column + 1, "exptime_s": f.exptime, "signal_e": round(f.exptime * f.flat_e_per_s, 1),
                        "frames": sum(g.column == f.column for g in flats)}
                       for k, f in enumerate(flats) if k == 0 or flats[k - 1].column != f.column]
    truths_file.write_text(json.dumps({"seed": seed, "design": design, "geometry": geometry.name, "test": test,
                                       "exptime_s": exptime, "gain_e_per_adu": LE1_GAIN_E_PER_ADU,
                                       **({"flats": fluence_columns} if flats else {}),
                                       "units": "ADU (offset, RON), e-/pix/h (dark current), canonical row, "
                                                "column and e-/s (hot pixels), e-/ADU (a quadrant's "
                                                "gain_e_per_adu, flats), relative rms (prnu_rms, flats), "
                                                "canonical row, column (dead_pixels) and relative response "
                                                "(low_response_pixels)", "ccds": quadrant_truths,
                                       "marks": {name: [list(spot) for spot in spots] for name, spots in marks.items()}},
                                      indent=1) + "\n")
    write_fpa_explog(explog, exposures)
    return LE1Simulation(day, explog, paths, truths_file, quadrant_truths, [e.obsid for e in exposures])
