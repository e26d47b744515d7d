"""CHINJ01/02 injected lines and NL01/02 tile levels from the check's read (chinj.LinesConsumer,
nl.TilesConsumer fed by quadrant_pass) against the frame-by-frame units (chinj.extract_unit,
nl.tile_unit), and a pipeline run that takes the check's read instead of reading frames again.

Error budget: none. The consumers run the units' own functions (chinj.quadrant_lines,
nl.frame_tiles / band_tiles) on the same counts in the same canonical orientation with the same
offsets: every statistic, profile, tile level and saturation flag must be equal, not close. A
flipped quadrant, a wrong offset, a readout window or on/off cycle taken from another frame
changes them by far more than rounding.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sim_days import EQUIPMENT, SERIALS

from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.formats.fits import read_frame, write_frame
from engine.formats.geometry import QUADRANTS, SMALL, SMALL_OBLONG
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim import elvis
from engine.tasks import chinj, nl
from engine.tasks.chinj_lib import InjectedLines, extract_lines
from engine.tasks.compiled.nl_kernels import band_trimmed_means
from engine.tasks.quadrant_pass import quadrant_readout_unit

GEOMETRY = SMALL_OBLONG  # fewer image columns than rows: a transposed quadrant cannot pass
OFFSETS = {"E": 1012.3, "F": 987.6, "G": 1503.1, "H": 1200.8}
LEVELS = {"E": 9000.0, "F": 12000.0, "G": 300.0, "H": 20000.0}


def injected_frame(seed: int, on: int, off: int, saturate: str | None = None) -> np.ndarray:
    """Per quadrant an offset with read noise; canonical image rows injected `on`, empty `off`,
    from row 0, with a column pattern, a trail into the first empty line and cosmic rays."""
    rng = np.random.default_rng(seed)
    frame = np.zeros(GEOMETRY.shape, np.uint16)
    rows, cols = GEOMETRY.image_rows, GEOMETRY.image_cols
    for k, q in enumerate(QUADRANTS):
        counts = OFFSETS[q] + 0.25 * seed + rng.normal(0, 4.5, (GEOMETRY.quad_height, GEOMETRY.quad_width))
        line = (np.arange(rows) % (on + off)) < on
        level = LEVELS[q] * (1 + 0.1 * seed) * (1 + 0.02 * rng.standard_normal(cols))[None, :]
        image = counts[:rows, GEOMETRY.prescan: GEOMETRY.prescan + cols]
        image += np.where(line[:, None], level, 0.0)
        image[1:] += 0.01 * np.where(line[:-1, None] & ~line[1:, None], level, 0.0)  # spill-over
        image[rng.integers(0, rows, 5), rng.integers(0, cols, 5)] += 8000.0 + 1000 * k
        if q == saturate:
            image[: rows // 3, : cols // 4] = 65535
        GEOMETRY.put_quadrant(frame, q, np.clip(np.rint(counts), 0, 65535).astype(np.uint16))
    return frame


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("frames")
    return [write_frame(folder / f"EUC_{2000 + i}_CCD1.fits", injected_frame(i, 5, 7, saturate="H" if i == 2 else None))
            for i in range(4)]


FOLDS = (chinj.FoldPlan(5, 7, 0, None), chinj.FoldPlan(5, 7, 9, None), chinj.FoldPlan(5, 7, 3, 50),
         chinj.FoldPlan(4, 8, 0, None))  # readout windows; the last folds the 5 + 7 cycle as 4 + 8


def assert_same_lines(mine: InjectedLines, unit: InjectedLines) -> None:
    for name, value in vars(unit).items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(getattr(mine, name), value, equal_nan=True), name
        else:
            assert getattr(mine, name) == value or (math.isnan(value) and math.isnan(getattr(mine, name))), name


def readouts_of(paths, start, plan) -> dict:
    return {(1, q): quadrant_readout_unit((1, q), [(p, 0, None) for p in paths], start, plan) for q in QUADRANTS}


def test_the_lines_consumer_gives_extract_unit_lines_in_every_quadrant(frames):
    readouts = readouts_of(frames, chinj.start_lines, chinj.LinesPlan(FOLDS))
    for i, (path, fold) in enumerate(zip(frames, FOLDS)):
        offsets = {q: readouts[(1, q)].offsets[i] for q in QUADRANTS}
        unit = chinj.extract_unit(path, offsets, fold.on, fold.off, fold.vstart, fold.vend)
        for q in QUADRANTS:
            assert not readouts[(1, q)].error
            seen_fold, mine = readouts[(1, q)].result.found[i]
            assert seen_fold == fold
            assert_same_lines(mine, unit[q])
    assert readouts[(1, "E")].result.found[0][1].p50 == pytest.approx(LEVELS["E"], rel=0.02)  # the injection, not the offset


def numpy_lines(canonical: np.ndarray, offset: float, fold) -> InjectedLines:
    """The extraction as numpy defines it (chinj_lib.extract_lines): the image area to the last
    row read as float32 minus the offset, rows below the readout window NaN."""
    stop = GEOMETRY.quad_height if fold.vend is None else min(fold.vend, GEOMETRY.quad_height)
    stop = min(stop, GEOMETRY.image_rows)
    area = canonical[:stop, GEOMETRY.prescan: GEOMETRY.prescan + GEOMETRY.image_cols].astype(np.float32)
    area -= np.float32(offset)
    area[: fold.vstart] = np.nan
    return extract_lines(area, fold.on, fold.off)


@pytest.mark.parametrize("quadrant", QUADRANTS)
def test_the_compiled_fold_gives_the_numpy_extraction_bit_for_bit(frames, quadrant):
    with read_frame(frames[2]) as frame:
        as_read = frame.section(*GEOMETRY.quadrant_slices(quadrant))
    canonical = GEOMETRY.to_canonical(as_read, quadrant)  # a flipped view, as the consumer has it
    for offset in (OFFSETS[quadrant] + 0.3712, 1712.0625):
        for fold in (*FOLDS, chinj.FoldPlan(5, 0, 0, None), chinj.FoldPlan(5, 7, 70, None)):
            assert_same_lines(chinj.quadrant_lines(canonical, GEOMETRY, offset, fold), numpy_lines(canonical, offset, fold))


def test_the_injection_lines_take_the_check_read_and_read_again_only_what_it_did_not_see(frames):
    readouts = readouts_of(frames, chinj.start_lines, chinj.LinesPlan(FOLDS))
    offsets = [{q: readouts[(1, q)].offsets[i] for q in QUADRANTS} for i in range(4)]
    offsets[1] = {**offsets[1], "G": offsets[1]["G"] + 0.5}  # an offset the check's read did not use
    rows = [{"chinj_on": f.on, "chinj_of": f.off, "vstart": f.vstart, "vend": "" if f.vend is None else f.vend}
            for f in FOLDS]
    rows[2] = {**rows[2], "chinj_of": 9}  # a cycle the check's read did not fold with
    dataset = [SimpleNamespace(obsid=2000 + i, path=p, row=r) for i, (p, r) in enumerate(zip(frames, rows))]
    prepared = SimpleNamespace(geometry=GEOMETRY, skipped=[], frames={1: [
        SimpleNamespace(obsid=f.obsid, path=f.path, offsets=o) for f, o in zip(dataset, offsets)]})
    needs = {chinj.PreparedData: prepared, chinj.FrameMeasures: SimpleNamespace(readouts=readouts)}
    units, notes = [], []
    ctx = SimpleNamespace(ccds=[1], need=needs.__getitem__, dataset=SimpleNamespace(frames=lambda ccd: dataset),
                          log=SimpleNamespace(info=notes.append),
                          map_units=lambda function, arguments: [units.append(a) or function(*a) for a in arguments])
    lines = chinj.InjectionLines.produce(ctx)
    assert [call[0] for call in units] == [frames[1], frames[2]]
    assert "2 frames from the check's read; 2 read again" in notes[0] and "differ" in notes[0]
    assert [f.obsid for f in lines.frames] == [2000, 2001, 2002, 2003]
    for i, found in enumerate(lines.frames):
        setting = found.setting
        unit = chinj.extract_unit(frames[i], offsets[i], setting.on, setting.off, setting.vstart, setting.vend)
        for q in QUADRANTS:
            assert_same_lines(found.quadrants[q], unit[q])
            if i in (0, 3):
                assert found.quadrants[q] is readouts[(1, q)].result.found[i][1]


def test_the_tiles_consumer_gives_tile_unit_levels_and_is_taken_only_for_the_same_frames_and_offsets(frames):
    readouts = readouts_of(frames, nl.start_tiles, True)
    for q in QUADRANTS:
        readout = readouts[(1, q)]
        offsets = list(readout.offsets)
        unit = nl.tile_unit((1, q), frames, offsets, GEOMETRY)
        mine, why = nl.read_tiles(readout, frames, offsets)
        assert why == "" and np.array_equal(mine.fluence, unit.fluence) and np.array_equal(mine.saturated, unit.saturated)
        assert mine.fluence.shape == (4, 4) and np.isfinite(mine.fluence).all()
        assert mine.saturated.any() == (q == "H")
        subset, _ = nl.read_tiles(readout, frames[1:3], offsets[1:3])  # a frame left out: the others taken
        assert np.array_equal(subset.fluence, unit.fluence[1:3])
        moved, why = nl.read_tiles(readout, frames, [offsets[0] + 1.0, *offsets[1:]])
        assert moved is None and "offsets differ" in why
    assert nl.read_tiles(None, frames, [0.0] * 4)[1].startswith("the check's read made no extraction")


@pytest.mark.parametrize("quadrant", QUADRANTS)
def test_the_compiled_tiles_are_the_numpy_trimmed_means_bit_for_bit(frames, quadrant):
    with read_frame(frames[2]) as frame:  # frame 2: quadrant H has a saturated block
        canonical = GEOMETRY.to_canonical(frame.section(*GEOMETRY.quadrant_slices(quadrant)), quadrant)
    offset = OFFSETS[quadrant] + 0.37
    fluence, saturated = nl.frame_tiles(canonical, GEOMETRY, offset)
    r_edges, c_edges = nl.tile_edges(GEOMETRY.image_rows), nl.tile_edges(GEOMETRY.image_cols)
    image = canonical[:, GEOMETRY.prescan: GEOMETRY.prescan + GEOMETRY.image_cols]
    tiles = [image[r_edges[a]: r_edges[a + 1], c_edges[b]: c_edges[b + 1]]
             for a in range(r_edges.size - 1) for b in range(c_edges.size - 1)]
    assert np.array_equal(fluence, [nl.trimmed_mean(tile) - offset for tile in tiles])
    assert np.array_equal(saturated, [bool((tile == 65535).any()) for tile in tiles])
    assert saturated.any() == (quadrant == "H")
    small = image[:3, :]  # tiles of 6 and 9 pixels: nothing trimmed (k = 0)
    means, flags = np.empty(2), np.zeros(2, bool)
    band_trimmed_means(small, np.array([0, 2, 5]), nl.TRIM_FRACTION, means, flags)
    assert np.array_equal(means, [nl.trimmed_mean(small[:, :2]), nl.trimmed_mean(small[:, 2:5])])


# -- a pipeline run: the check's read feeds both families, no frame is read again ----------------

def keeping(produce, kept: list):
    @functools.wraps(produce)
    def wrapper(cls, ctx):
        kept.append((result := produce.__func__(cls, ctx), ctx.need(chinj.PreparedData)))
        return result
    return classmethod(wrapper)


@pytest.fixture(scope="module")
def pipeline_runs(tmp_path_factory):
    """CHINJ01 and NL01 of the small geometry, CCD1 only, aim mode, jobs 1
    (the units run in this process): the units that read frames again are recorded."""
    out = tmp_path_factory.mktemp("day") / "data"
    request = elvis.SimulationRequest(tests=("CHINJ01", "NL01"), out=out, chamber=load_chamber("B_NOSTROMO"),
                                      geometry=SMALL, equipment=EQUIPMENT, jobs=1)
    # CCD1's frames only (the others logged, not written: the check says so): a third of the time
    missing = frozenset((e.obsid, ccd) for e in elvis.plan_for(request) for ccd in (2, 3))
    elvis.simulate(dataclasses.replace(request, missing_frames=missing))
    folder = tmp_path_factory.mktemp("results") / "results"
    read_again, kept, fitted = [], [], []
    with pytest.MonkeyPatch.context() as patch:
        fit = chinj.fit_ig1_curve
        patch.setattr(chinj, "fit_ig1_curve", lambda *a: fitted.append(fit(*a)) or fitted[-1])
        for module, name in ((chinj, "extract_unit"), (nl, "tile_unit")):
            unit = getattr(module, name)
            patch.setattr(module, name, lambda *a, _unit=unit, _name=name: read_again.append(_name) or _unit(*a))
        patch.setattr(chinj.InjectionLines, "produce", keeping(chinj.InjectionLines.produce, kept))
        campaign = campaign_from_dict({
            "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
            "paths": {"data": str(out), "results": str(folder)}, "sessions": {"D11": {"tests": ["CHINJ01", "NL01"]}},
        }, base_dir=folder.parent)
        PipelineRun(campaign, RunOptions(session="D11", jobs=1)).run_aim()
    records = {t: json.loads((folder / "D11" / t / "result.json").read_text()) for t in ("CHINJ01", "NL01")}
    return records, read_again, kept, fitted


def test_a_pipeline_run_takes_the_check_read_and_reads_no_frame_again(pipeline_runs):
    records, read_again, kept, fitted = pipeline_runs
    assert read_again == []
    # CCD1's four curves fitted once each, in the check's read (jobs 1: in this process); the other
    # CCDs have no frames (no points: nothing to fit)
    fitted = [f for f in fitted if f.points]
    assert len(fitted) == 4
    chinj01 = records["CHINJ01"]["ccds"]
    assert sorted(q["ig1_threshold_v"] for q in chinj01["CCD1"].values()) == sorted(round(f.get("threshold"), 3)
                                                                                  for f in fitted)
    for record in records.values():
        assert record["subtasks"]["extract"] == "done", record["subtasks"]
    lines, prepared = kept[0]
    assert len(lines.frames) == 36 and not lines.skipped and {f.ccd for f in lines.frames} == {1}
    for found in lines.frames[::7]:  # the pipeline's lines are extract_unit's on the simulator's frames
        frame = next(f for f in prepared.frames[found.ccd] if f.obsid == found.obsid)
        setting = found.setting
        unit = chinj.extract_unit(frame.path, frame.offsets, setting.on, setting.off, setting.vstart, setting.vend)
        for q in QUADRANTS:
            assert_same_lines(found.quadrants[q], unit[q])


def test_the_consumers_fit_the_injection_curve_and_meta_takes_a_fit_only_of_the_same_points(frames):
    """The fit of the frames the consumer saw is fit_ig1_curve's of their (IG1, p50) points; a
    point that differs (another frame, another level) makes meta fit again."""
    ig1 = (3.0, 4.0, 5.0, 6.0)
    settings = tuple(chinj.InjectionSetting(1, f.on, f.off, 60.0, 50.0, 20.0, 8.0, {"T": v, "B": v},
                                            {"T": 7.0, "B": 7.0}, f.vstart, f.vend)
                     for f, v in zip(FOLDS, ig1))  # id_dly / toi_ch = 2.5: half B (quadrants E, F) injected
    readouts = readouts_of(frames, chinj.start_lines, chinj.LinesPlan(FOLDS, settings, "IG1"))
    for q in QUADRANTS:
        curve = readouts[(1, q)].result.curve
        levels = [readouts[(1, q)].result.found[i][1].p50 for i in range(4)] if q in "EF" else []
        volts = list(ig1) if q in "EF" else []
        assert curve.volts == tuple(volts) and curve.levels == tuple(levels)
        assert curve.fit == chinj.fit_ig1_curve(volts, levels)
        assert chinj.fitted_in_read(readouts[(1, q)], "IG1", volts, levels) is curve.fit
        assert chinj.fitted_in_read(readouts[(1, q)], "IDL", volts, levels) is None
        if volts:
            assert curve.fit.ok and curve.fit.points == 4
            assert chinj.fitted_in_read(readouts[(1, q)], "IG1", volts[:3], levels[:3]) is None
            assert chinj.fitted_in_read(readouts[(1, q)], "IG1", volts, [levels[0] + 0.01, *levels[1:]]) is None
        else:
            assert not curve.fit.ok
    assert chinj.fitted_in_read(None, "IG1", [], []) is None
    no_meta = readouts_of(frames[:1], chinj.start_lines, chinj.LinesPlan(FOLDS[:1]))
    assert no_meta[(1, "E")].result.curve is None and chinj.fitted_in_read(no_meta[(1, "E")], "IG1", [], []) is None
