"""FLAT01 over the FPA (engine/tasks/fpa_flat.py: the block FLAT01's flat consumer fed by
fpa_family.py's units, its PRNU and checks; the master flats and the flat-defect mask in the LE1
layout) on simulated small LE1 flats: FLAT01's first 2 columns (25 % and 50 % of full well),
10 frames each (the block's clipped mean: 10 frames is its least), 3 dead and 3 low-response
pixels (response 0.3-0.6) a quadrant, each quadrant's PRNU the block simulator's (0.8-1.2 %).

Error budget of a quadrant's PRNU (small LE1 geometry: 64 x 64 image pixels, as the block test's
small frames), the block test's (test_analysis_flat.py) with this test's frames:
- the std of 4096 pixels of a Gaussian map differs from the injected rms by 1/sqrt(2 x 4096) =
  1.1 % (1 sigma); the two columns share the map, so this error is shared too;
- the master's own noise: 10 frames at 54k and 108k e- (3.3 e-/ADU) give 0.14 % and 0.10 %, removed
  in quadrature by its median EFLAT (itself from 10 values: a few % low), < 0.1 % left;
- brighter-fatter smooths the flat by up to ~2 % at 50 % of full well, the illumination boxes
  (8 px) absorb ~1.5 % of the PRNU variance (-0.75 % on the rms): about -3 % at worst.
So each of the 288 values is within 3.5 sigma (3.9 %) + 3 % = 7 % of its truth with a fixed seed,
inside the block test's 10 %; per column the errors' spread is the 1.1 % statistical error (144
values: its estimate good to 6 %; held to 1.6 %) and their mean within -3.5 % and +1 %.
The mask: a dead pixel's flat response is its noise over the level (~1e-4), a low-response one's
0.3-0.6 (+-0.2 %), the PRNU 1 % (no good pixel within 20 sigma of 0.75 or 1.25): the DEFECTS bits
are exactly the injected pixels.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from astropy.io import fits
from fpa_frames import elvis_frames_of, run_fpa

from engine.formats.fits import read_frame
from engine.formats.fpa import fpa_layout
from engine.formats.geometry import QUADRANTS
from engine.formats.le1 import LE1_SMALL, read_le1
from engine.sim.le1 import simulate_le1
from engine.tasks.cosmetics import DEAD, LOW
from engine.tasks.flat import (
    FLAT_EXTENSIONS,
    ColumnInput,
    FlatLimits,
    FlatTarget,
    flat_unit,
)
from engine.tasks.fpa_family import fpa_family_for, fpa_quadrant_unit
from engine.tasks.measures import quadrant_stats
from engine.tasks.stacking import allocate_fits

FLUENCES, FRAMES, SEED, DEAD_PIXELS = 2, 10, 3, 3
TOLERANCE = 0.10  # the block test's (test_analysis_flat.py)


@pytest.fixture(scope="module")
def fpa_flat(tmp_path_factory):
    root = tmp_path_factory.mktemp("fpa_flat")
    sim = simulate_le1(root / "data", test="FLAT01", fluences=FLUENCES, frames=FRAMES, seed=SEED,
                       dead_pixels=DEAD_PIXELS)
    folder, record = run_fpa(sim.day_folder, "FLAT01", root / "results")
    return sim, json.loads(sim.truths_file.read_text()), folder, record


def test_the_simulated_flats_follow_the_catalogue_structure(fpa_flat):
    _, truths, _, record = fpa_flat
    assert [f["frames"] for f in truths["flats"]] == [FRAMES] * FLUENCES
    assert [round(f["signal_e"] / (65536 * 3.3), 3) for f in truths["flats"]] == [0.25, 0.5]
    assert (record["family"], record["test"], record["exposures"]) == ("flat", "FLAT01", FRAMES * FLUENCES)
    values = record["values"]
    assert values["flat_columns"] == ["col001", "col002"] and values["wavelength_nm"] == 800
    assert values["exptime_s"] == [f["exptime_s"] for f in truths["flats"]]
    # clean flats at the default chamber's times: within the fluence and flux tolerances; nothing flagged
    assert record["flags"] == [] and record["subtasks"] == {"basic": "done", "meta": "done"}


def test_the_prnu_of_all_144_quadrants_is_recovered(fpa_flat):
    _, truths, folder, record = fpa_flat
    errors = []
    for ccdid, quadrants in record["ccds"].items():
        for q, values in quadrants.items():
            truth_pct = 100 * truths["ccds"][ccdid][q]["prnu_rms"]
            assert values["frames_combined"] == [FRAMES] * FLUENCES, (ccdid, q)
            assert len(values["prnu_pct"]) == FLUENCES and len(values["fluence_adu"]) == FLUENCES
            errors.append([prnu / truth_pct - 1 for prnu in values["prnu_pct"]])
    errors = np.array(errors)
    assert errors.shape == (144, FLUENCES)
    assert np.abs(errors).max() < TOLERANCE, np.abs(errors).max()
    for column in errors.T:
        assert column.std() < 0.016 and -0.035 < column.mean() < 0.01, (column.mean(), column.std())
    assert record["figures"] == ["figs/FLAT01_fpa_prnu_pct.png"]
    assert (folder / record["figures"][0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_injected_dead_pixels_are_in_the_le1_mask_at_their_le1_positions(fpa_flat):
    """Each injected dead (and low-response) pixel, canonical (row, column) in the truths, lies
    in the mask's extension of its quadrant flipped as the LE1 layout stores it; the raw LE1 frame
    read by astropy shows no light at that very pixel (below COSMETICS00's 0.1 of the level: the
    renderer's CTI trails ~1 % into it), so the orientation is checked on the data."""
    sim, truths, folder, record = fpa_flat
    height, width = LE1_SMALL.quad_height, LE1_SMALL.quad_width
    with fits.open(folder / "products" / "EUC_MASK_FPA.fits") as hdus, fits.open(sim.frames[0]) as raw:
        assert hdus[0].header["PRODUCT"] == "MASK" and hdus[0].header["BIT1"] == "dead"
        assert [h.name for h in hdus[1:]] == [place.extname for place in fpa_layout().quadrants]
        for place in fpa_layout().quadrants:
            truth = truths["ccds"][place.ccd.ccdid][place.quadrant]

            def stored(row: int, col: int, place=place) -> tuple[int, int]:
                return (height - 1 - row if place.flip_rows else row, width - 1 - col if place.flip_cols else col)

            bits = hdus[place.extname].data
            dead = {stored(r, c) for r, c in truth["dead_pixels"]}
            low = {stored(r, c) for r, c, _ in truth["low_response_pixels"]}
            assert len(dead) == DEAD_PIXELS and len(low) == DEAD_PIXELS
            assert {tuple(p) for p in np.argwhere(bits & DEAD)} == dead, place.extname
            assert {tuple(p) for p in np.argwhere(bits & LOW)} == low, place.extname
            assert np.count_nonzero(bits) == 2 * DEAD_PIXELS, place.extname  # no other pixel flagged
            assert hdus[place.extname].header["NDEAD"] == DEAD_PIXELS
            values = record["ccds"][place.ccd.ccdid][place.quadrant]
            assert (values["mask_dead_pixels"], values["mask_low_response_pixels"]) == (DEAD_PIXELS, DEAD_PIXELS)
            frame = raw[place.extname].data.astype(float)  # as stored in the file (astropy: no layout code)
            level = np.median(frame) - truth["offset_adu"]
            for row, col in dead:  # the stored pixel of the raw frame: no light but what CTI trails into it
                assert frame[row, col] - truth["offset_adu"] < 0.1 * level, place.extname


def test_the_master_flats_are_the_block_masters_in_the_le1_layout(fpa_flat, tmp_path):
    """C_41's quadrants of column 1 put into ELVIS frames and combined by the block's own unit
    (flat.flat_unit: reads the frames itself, writes the block's FITS) give the FPA's PRNU (the same
    sums of the same counts) and its FLAT plane to the FPA product's quantisation (QMAXERR) plus
    float32 rounding; the FPA product has the LE1 layout and the provenance."""
    sim, _, folder, record = fpa_flat
    names = [place.extname for place in fpa_layout().quadrants]
    product = folder / "products" / "EUC_FF_800nm_col001_FPA.fits"
    assert record["products"] == [f"products/EUC_FF_800nm_col00{k}_FPA{e}.fits" for k in (1, 2) for e in ("", "_ERR")] \
        + ["products/EUC_MASK_FPA.fits"]
    paths = elvis_frames_of(sim.frames[:FRAMES], "C_41", tmp_path)
    stats = []
    for path in paths:
        with read_frame(path) as frame:
            stats.append({q: quadrant_stats(frame, q, LE1_SMALL, slice(0, LE1_SMALL.image_rows)) for q in QUADRANTS})
    with fits.open(product) as hdus, fits.open(folder / "products" / "EUC_FF_800nm_col001_FPA_ERR.fits") as errors:
        primary = hdus[0].header
        assert [h.name for h in hdus[1:]] == names and [h.name for h in errors[1:]] == names
        assert (primary["PRODUCT"], primary["TEST"], primary["BLOCK"], primary["LAYOUT"]) == \
            ("MASTERFLAT", "FLAT01", "FPA", "LE1")
        assert (primary["NCOMB"], primary["COLUMN"], primary["WAVELEN"], len(primary["HISTORY"])) == \
            (FRAMES, "col001", 800, FRAMES)
        assert errors[0].header["PRODUCT"] == "MASTERFLAT_ERR"
        for q in QUADRANTS:
            offsets = [s[q].prescan.clipped_mean for s in stats]
            levels = [s[q].image.clipped_mean - o for s, o in zip(stats, offsets)]
            target = tmp_path / f"block_{q}.fits"
            target = FlatTarget(target, allocate_fits(target, fits.Header(), FLAT_EXTENSIONS, LE1_SMALL.shape))
            (block,) = flat_unit((1, q), [ColumnInput("col001", paths, offsets, levels, target)], LE1_SMALL, None)
            values = record["ccds"]["C_41"][q]
            assert values["prnu_pct"][0] == pytest.approx(block.prnu_pct, rel=1e-9), q
            assert values["flat_noise_pct"][0] == pytest.approx(block.noise_pct, rel=1e-9), q
            with fits.open(target.path) as block_hdus:
                block_flat = LE1_SMALL.quadrant(block_hdus["FLAT"].data, q, canonical=True)
            place = fpa_layout().quadrant("C_41", q)
            extension = hdus[place.extname]
            assert extension.header["NCOMB"] == FRAMES and extension.header["COLUMN"] == "col001"
            stored = extension.data
            canonical = stored[:: -1 if place.flip_rows else 1, :: -1 if place.flip_cols else 1]
            assert np.abs(canonical - block_flat).max() <= extension.header["QMAXERR"] + 1e-6, q
            assert not math.isnan(errors[place.extname].header["QNOISE"])


def test_exposure_times_logged_20_percent_long_are_fluence_and_flux_out_of_limits(fpa_flat, tmp_path):
    """C_41 E (LE1 4-1.E) with every extension's EXPTIME 1.2 x what the lamp gave (as a wrong
    header would): each column's fluence is 1/1.2 of its expectation, -17 % (+-3 %: the gain spread
    3.2-3.4 against the nominal 3.3) where 10 % is allowed (FLUENCE_OOL, as the block's check says
    it), and the time to full well from the slope 1.2 x the chamber's, +20 % where 10 % is allowed
    (FLUX_OOL); the PRNU, which does not depend on the exposure time, is the run's."""
    sim, _, _, record = fpa_flat
    files = [read_le1(path) for path in sim.frames]
    frames = [(le1.path, dataclasses.replace(le1.extensions["4-1.E"], exptime=1.2 * le1.extensions["4-1.E"].exptime))
              for le1 in files]
    fpa = fpa_family_for("FLAT01")
    plan = fpa.consumer.plan([extension for _, extension in frames], tmp_path, False, "FLAT01")
    unit = fpa_quadrant_unit(frames, LE1_SMALL, feed=(fpa.consumer.start, plan))
    raised = fpa.quadrant_flags(unit, FlatLimits())
    assert [flag for flag, _ in raised] == ["FLUENCE_OOL", "FLUENCE_OOL", "FLUX_OOL"], raised
    assert raised[0][1].startswith("column col001: fluence ") and "(+-10 %)" in raised[0][1]
    assert ".mosaic.L1.fits)" in raised[0][1]  # the most extreme frame named by its file
    assert raised[2][1].startswith("800 nm: flux ") and "(slope over 20 frames)" in raised[2][1]
    assert fpa.quadrant_values(unit, 3.5)["prnu_pct"] == record["ccds"]["C_41"]["E"]["prnu_pct"]
    assert not list(tmp_path.rglob("*.f32")) and not list(tmp_path.rglob("*.fits"))  # nothing left behind
