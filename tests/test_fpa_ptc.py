"""PTC01 over the FPA (engine/tasks/fpa_ptc.py: the block PTC's pair consumer fed by fpa_family.py's
units, the block's fit and checks) on simulated small LE1 flat pairs: PTC01's first 5 fluences
(5-50 % of full well: the fit range), 4 frames each (2 pairs), gains 3.2-3.4 e-/ADU drawn per
quadrant and one quadrant, C_41 G, injected at 4.3 e-/ADU (outside the PTC limits [3.1, 3.5]).

Error budget of a quadrant's gain (small LE1 geometry: 64 x 64 image pixels, 16 tiles of 256):
- a tile's variance from n = 256 pixels has the relative error sqrt(2/n) = 8.8 %; a fluence
  holds 2 pairs x 16 tiles: 1.6 % on its variance;
- the weighted quadratic var = p0 mu^2 + p1 mu + p2 over the 5 fluences (3.3k-33k ADU at 3.3
  e-/ADU), its quadratic and intercept free, gives p1 (= 1/gain) to 3.15 % (the fit's covariance
  for that design, computed for the docstring); where the 50 % fluence lies above 32768 ADU and
  its tiles' variances spread by more than 10 % (a 256-pixel tile's own 8.8 %), the block's fit
  drops it as saturation-smeared, and 4 fluences give 5.4 %;
- the model terms the fit does not describe (non-linearity, brighter-fatter beyond second order)
  bias it by < 0.3 % (the block test's bound; the simulator is the block's renderer).
So each quadrant's error is held to [0.8 x 3.15 %, 1.25 x 5.4 %], the gain to 4 of its own sigmas
(as the block test; over 144 quadrants an honest 4-sigma miss has a chance of 1 %, and the seed
is fixed), the pulls' rms to [0.8, 1.2] (the rms of 144 unit normals: 1 +- 0.06), and the mean
relative error of the 143 quadrants at their drawn gains to 3 x 3.15 % / sqrt(143) + 0.3 %.
The injected 4.3 e-/ADU is 0.8 e-/ADU above the range: 6 of its sigmas beyond the 2 the check
allows; a drawn gain (at most 3.4) reaches REQNOTMET only 3 sigmas off: none expected.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
from fpa_frames import elvis_frames_of, run_fpa

from engine.formats.fits import read_frame
from engine.formats.geometry import QUADRANTS
from engine.formats.le1 import LE1_SMALL, LE1File
from engine.sim.le1 import draw_quadrant_truths, simulate_le1
from engine.tasks.fpa_family import fpa_family_for, fpa_quadrant_unit
from engine.tasks.measures import quadrant_stats
from engine.tasks.ptc import GAIN_TABLE_COLUMNS, PTCLimits, fit_values
from engine.tasks.ptc_lib import PTCPoints, fit_ptc, pair_tiles_unit

FLUENCES, FRAMES, SEED = 5, 4, 5
LOUD = ("C_41", "G", 4.3)  # CCD, quadrant, injected gain (e-/ADU): above the PTC limits [3.1, 3.5]
UNEQUAL = 1.3
PREDICTED_ERROR = (0.0315, 0.054)  # relative gain error of 5 and of 4 fluences (docstring)


@pytest.fixture(scope="module")
def fpa_ptc(tmp_path_factory):
    root = tmp_path_factory.mktemp("fpa_ptc")
    truths = draw_quadrant_truths(SEED)
    ccd, quadrant, gain = LOUD
    truths[ccd][quadrant]["gain_e_per_adu"] = gain
    sim = simulate_le1(root / "data", test="PTC01", fluences=FLUENCES, frames=FRAMES, seed=SEED, truths=truths)
    folder, record = run_fpa(sim.day_folder, "PTC01", root / "results")
    return sim, json.loads(sim.truths_file.read_text()), folder, record


def test_the_simulated_pairs_follow_the_catalogue_structure(fpa_ptc):
    _, truths, _, record = fpa_ptc
    assert [f["frames"] for f in truths["flats"]] == [FRAMES] * FLUENCES
    assert [round(f["signal_e"] / (65536 * 3.3), 3) for f in truths["flats"]] == [0.05, 0.1, 0.2, 0.3, 0.5]
    assert (record["family"], record["test"], record["exposures"]) == ("ptc", "PTC01", FRAMES * FLUENCES)
    assert record["values"]["pairs_used"] == 144 * FLUENCES * FRAMES // 2 and record["values"]["pairs_rejected"] == []


def test_the_gain_of_all_144_quadrants_is_recovered(fpa_ptc):
    _, truths, _, record = fpa_ptc
    pulls, relative = [], []
    for ccdid, quadrants in record["ccds"].items():
        for q, values in quadrants.items():
            truth = truths["ccds"][ccdid][q]["gain_e_per_adu"]
            gain, error = values["gain_e_per_adu"], values["gain_err_e_per_adu"]
            assert 0.8 * PREDICTED_ERROR[0] < error / gain < 1.25 * PREDICTED_ERROR[1], (ccdid, q, gain, error)
            assert abs(gain - truth) < 4 * error, (ccdid, q, gain, truth, error)
            assert values["fit_quality"] == "POORFIT"  # ~3 % where the limit is 1 %: the small geometry's lot
            assert values["pairs_used"] == FLUENCES * FRAMES // 2 and values["ptc_points_fitted"] >= 4 * 2 * 16 - 8
            pulls.append((gain - truth) / error)
            if (ccdid, q) != LOUD[:2]:
                relative.append(gain / truth - 1)
    assert len(pulls) == 144
    assert 0.8 < math.sqrt(np.mean(np.square(pulls))) < 1.2  # the errors are honest
    assert abs(np.mean(relative)) < 3 * PREDICTED_ERROR[0] / math.sqrt(143) + 0.003  # no bias over the FPA
    assert record["figures"] == ["figs/PTC01_fpa_gain_e_per_adu.png"]
    folder = fpa_ptc[2]
    assert (folder / record["figures"][0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_quadrant_with_an_out_of_limit_gain_is_named(fpa_ptc):
    _, _, folder, record = fpa_ptc
    ccd, quadrant, _ = LOUD
    named = [(r["ccd"], r["quadrant"], r["reason"]) for r in record["flag_reasons"] if r["flag"] == "REQNOTMET"]
    assert [(c, q) for c, q, _ in named] == [(ccd, quadrant)]
    assert named[0][2].endswith("e-/ADU outside [3.1, 3.5] e-/ADU") and "REQNOTMET" in record["flags"]
    report = (folder / "report.md").read_text()
    assert f"- REQNOTMET {ccd} {quadrant}: gain {record['ccds'][ccd][quadrant]['gain_e_per_adu']:.4f}" in report
    # every small-geometry fit says POORFIT (BADFIT), as the block's do; nothing else is flagged
    assert set(record["flags"]) == {"BADFIT", "REQNOTMET"}


def test_the_gain_table_has_every_quadrant(fpa_ptc):
    _, _, folder, record = fpa_ptc
    assert record["products"] == ["products/PTC01_GAIN_TB.csv"] and record["subtasks"]["meta"] == "done"
    with open(folder / record["products"][0]) as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == GAIN_TABLE_COLUMNS and len(rows) == 145
    by_place = {(r[0], r[1]): r for r in rows[1:]}
    for ccdid, quadrants in record["ccds"].items():
        for q, values in quadrants.items():
            assert float(by_place[(ccdid, q)][2]) == values["gain_e_per_adu"]
            assert by_place[(ccdid, q)][9] == values["fit_quality"]


def test_the_fpa_gain_is_the_block_ptc_gain(fpa_ptc, tmp_path):
    """C_41's quadrants put into ELVIS frames, paired and tiled by the block's own pair unit
    (ptc_lib.pair_tiles_unit, numpy: what extract_PTC reads again when the check's read did not
    pair the frames) and fitted by the block's fit, give the FPA's values (fed by its units to the
    compiled ptc_lib.PairTiles): the same tiles to float64 rounding, so the same gain."""
    sim, _, _, record = fpa_ptc
    geometry = LE1_SMALL
    paths = elvis_frames_of(sim.frames, "C_41", tmp_path, geometry)
    offsets = []
    for path in paths:
        with read_frame(path) as frame:
            offsets.append({q: quadrant_stats(frame, q, geometry, slice(0, geometry.image_rows)).prescan.clipped_mean
                            for q in QUADRANTS})
    pairs = [(k, k + 1) for k in range(0, len(paths), 2)]
    tiles = [pair_tiles_unit(paths[a], paths[b], offsets[a], offsets[b], geometry) for a, b in pairs]
    for q in QUADRANTS:
        chosen = [t[q] for t in tiles]
        points = PTCPoints(np.concatenate([t.means for t in chosen]), np.concatenate([t.variances for t in chosen]),
                           np.concatenate([t.pixels for t in chosen]), np.concatenate([t.saturated for t in chosen]),
                           np.concatenate([np.full(t.means.size, k // (FRAMES // 2)) for k, t in enumerate(chosen)]))
        block = fit_values(fit_ptc(points, rel_error_max=PTCLimits().gain_rel_err_max))
        fpa = record["ccds"]["C_41"][q]
        for name, decimals in (("gain_e_per_adu", 4), ("gain_err_e_per_adu", 4), ("ptc_intercept_adu2", 3),
                               ("bloom_adu", 1)):  # result.json's precision (the family's ValueSpecs)
            assert fpa[name] == pytest.approx(block[name], abs=10.0 ** -decimals), (q, name)
        assert (fpa["ptc_points_fitted"], fpa["fit_quality"]) == (block["ptc_points_fitted"], block["fit_quality"]), q


def test_a_pair_of_unequal_fluences_and_a_fluence_off_its_exposure_time_are_flagged(fpa_ptc, tmp_path):
    """In C_41 E (LE1 4-1.E) the second frame of column 2's first pair gets 1.3 x its signal: the
    pair is left out (POORQUALDATA naming both frames: |f1 - f2| / mean = 0.3 / 1.15 = 26.1 %, 5 %
    allowed) and the gain is fitted on the other 9 pairs. Column 3's four extensions say 1.3 x their
    exposure time (as a wrong EXPTIME would): its fluence is 23 % below exposure time x the flux
    of the other columns, the tolerance 10 % (FLUENCE_OOL); its pairs and tiles are unchanged."""
    sim, truths, _, _ = fpa_ptc
    files = [LE1File(path) for path in sim.frames]
    extname, offset = "4-1.E", truths["ccds"]["C_41"]["E"]["offset_adu"]
    frames = []
    for index, le1 in enumerate(files):
        path, extension = le1.path, le1.extensions[extname]
        if index == 5:  # (4, 5): column 2's first pair
            path = tmp_path / le1.path.name
            shutil.copyfile(le1.path, path)
            raw = np.memmap(path, dtype=">i2", mode="r+", offset=extension.data_offset, shape=extension.shape)
            counts = raw.astype(np.float64) + 32768
            raw[:] = (np.clip(np.rint(offset + UNEQUAL * (counts - offset)), 0, 65535) - 32768).astype(">i2")
            raw.flush()
            del raw
        if 8 <= index < 12:  # column 3
            extension = dataclasses.replace(extension, exptime=UNEQUAL * extension.exptime)
        frames.append((path, extension))
    extensions = [extension for _, extension in frames]
    fpa = fpa_family_for("PTC01")
    record = fpa_quadrant_unit(frames, LE1_SMALL, feed=(fpa.consumer.start, fpa.consumer.plan(extensions)))
    raised = fpa.quadrant_flags(record, PTCLimits())
    assert [flag for flag, _ in raised] == ["POORQUALDATA", "FLUENCE_OOL"], raised
    assert f"pair {files[4].path.name}/{files[5].path.name} (EXPTIME" in raised[0][1]
    assert "differ by 26.1 %" in raised[0][1] and "(limit 5 %): pair left out" in raised[0][1]
    assert raised[1][1].startswith("column 3 (exptime") and "(tolerance 10 %)" in raised[1][1]
    values = fpa.quadrant_values(record, 3.5)
    assert values["pairs_used"] == FLUENCES * FRAMES // 2 - 1
    truth = truths["ccds"]["C_41"]["E"]["gain_e_per_adu"]
    assert abs(values["gain_e_per_adu"] - truth) < 4 * values["gain_err_e_per_adu"]
