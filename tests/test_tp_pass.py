"""Trap pumping from the check's read (tp.PumpingConsumer, Family.per_quadrant) and its compiled
maps (tp_lib.CountsMap, compiled/tp_kernels.py): the same numbers as the numpy definitions and as
the sub-tasks' own units, bit for bit.

Error budget: none. The compiled sweeps repeat numpy's float operations in numpy's order, and the
consumer runs the units' functions on the same counts: every map, sigma, dipole, amplitude and
fit input must be equal, not close.
"""

from __future__ import annotations

import functools
import time
from typing import ClassVar

import numpy as np
import pytest
from sim_days import EQUIPMENT, SERIALS

from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.formats.geometry import MEDIUM, QUADRANTS, SMALL
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim import elvis
from engine.tasks import tp, tp_lib
from engine.tasks.quadrant_pass import quadrant_readout_unit


def frame_with_dipoles(rng, geometry, nan_column: int | None = None) -> np.ndarray:
    """A canonical quadrant of counts: an injected image (column pattern, shot noise), dipoles."""
    rows, cols = geometry.image_rows, geometry.image_cols
    image = 12600 + 300 * rng.standard_normal(cols)[None, :] + 62 * rng.standard_normal((rows, cols))
    for _ in range(rows * cols // 200):
        r, c = rng.integers(1, rows - 2), rng.integers(0, cols)
        amplitude = rng.uniform(50, 1500)
        image[r, c] -= amplitude
        image[r + 1, c] += amplitude
    if nan_column is not None:
        image[:, nan_column] = 0.0  # a column without level: vertical_map zeroes it
    canonical = np.full((geometry.quad_height, geometry.quad_width), 1000, np.uint16)
    canonical[:rows, geometry.prescan: geometry.prescan + cols] = np.clip(image + 1000, 0, 65535).astype(np.uint16)
    return canonical


@pytest.mark.parametrize("quadrant", QUADRANTS)
@pytest.mark.parametrize("nan_column", [None, 7])
def test_the_compiled_map_is_vertical_map_bit_for_bit_in_every_orientation(quadrant, nan_column):
    geometry = MEDIUM
    rng = np.random.default_rng(3)
    canonical = frame_with_dipoles(rng, geometry, nan_column)
    as_read = np.ascontiguousarray(geometry.to_canonical(canonical, quadrant))
    rows = (3, geometry.image_rows - 2)  # a readout window
    offset = 1000.37
    image = np.subtract(canonical[rows[0]: rows[1], geometry.prescan: geometry.prescan + geometry.image_cols],
                        np.float32(offset), dtype=np.float32)
    residual, level, sigma = tp_lib.vertical_map(image)
    dipoles = tp_lib.find_dipoles(residual, sigma)

    window = tp.image_window(quadrant, geometry, rows)
    assert np.array_equal(np.subtract(window.image(as_read), np.float32(offset), dtype=np.float32), image)
    assert tp_lib.window_median(as_read, window, offset) == float(np.median(image))  # the injection level
    made = tp_lib.CountsMap.of(as_read, window, offset)
    assert np.array_equal(made.level, level) and made.sigma == sigma
    assert np.array_equal(made.canonical_residual, residual)
    found = made.dipoles()
    assert dipoles.along.size > 20
    for name in ("along", "across", "polarity", "amplitude"):
        assert np.array_equal(getattr(found, name), getattr(dipoles, name)), name
    traps = tp_lib.merge_dipoles([dipoles]) + [(5, 7, 1), (0, 0, -1), (rows[1] - rows[0] - 1, 3, 1)]
    expected = tp_lib.dipole_amplitudes(residual, traps)
    made.drop_map()
    assert np.array_equal(made.amplitudes(traps), expected)  # the traps' columns replayed from the counts
    assert np.array_equal(made.dipoles().amplitude, dipoles.amplitude)  # the dropped map made again

    # without the map, from a copy of the counts made in its first sweep: the same sigma, dipoles, amplitudes
    kept = np.empty((window.rows, window.width), np.uint16)
    mapless = tp_lib.CountsMap.of(as_read, window, offset, keep=kept, with_map=False)
    assert np.array_equal(window.canonical(kept), window.image(as_read))
    assert (mapless.pairs is None) == (nan_column is not None)  # a column without level: the map is made
    assert np.array_equal(mapless.level, level) and mapless.sigma == sigma
    found = mapless.dipoles()
    for name in ("along", "across", "polarity", "amplitude"):
        assert np.array_equal(getattr(found, name), getattr(dipoles, name)), name
    as_read[:] = 0  # the frame's array is free again: the kept copy replays
    assert np.array_equal(mapless.amplitudes(traps), expected)
    assert np.array_equal(mapless.canonical_residual, residual)
    # a threshold below the pairs' floor: the map is made again for it
    low = tp_lib.find_dipoles(residual, sigma, threshold_sigma=2.0)
    assert low.along.size > dipoles.along.size
    assert np.array_equal(mapless.dipoles(threshold_sigma=2.0).amplitude, low.amplitude)


@pytest.mark.parametrize("shape", [(5, 3), (4, 3)])
def test_the_median_from_the_histogram_is_numpys_for_odd_and_even_counts(shape):
    counts = np.random.default_rng(5).integers(990, 1010, (8, 6)).astype(np.uint16)
    window = tp_lib.ImageWindow.of(counts.shape, (True, False), (1, 1 + shape[0]), (2, 2 + shape[1]))
    image = np.subtract(window.image(counts), np.float32(1000.3), dtype=np.float32)
    assert image.shape == shape and tp_lib.window_median(counts, window, 1000.3) == float(np.median(image))


def test_a_pool_hands_back_its_arrays_and_lets_them_go_when_idle():
    pool = tp.ArrayPool()
    pool.IDLE_S = 0.05
    first = pool.take((3, 4), np.uint16)
    pool.give_back([first, pool.take((2,), np.float32)])
    assert pool.take((3, 4), np.uint16) is first and pool.free_count() == 1  # by shape and type
    pool.give_back([first])
    deadline = time.monotonic() + 5
    while pool.free_count() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.free_count() == 0


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("day") / "data"
    request = elvis.SimulationRequest(tests=("TP01", "TP02"), out=out, chamber=load_chamber("B_NOSTROMO"),
                                      geometry=SMALL, equipment=EQUIPMENT, jobs=1)
    elvis.simulate(request)
    return out


class NoReadouts:
    """Stands for the check's measurements without the consumers' results: the sub-tasks' own units."""

    readouts: ClassVar[dict] = {}

    @classmethod
    def produce(cls, ctx):
        return cls()


def analyse(data, folder, test):
    """One aim-mode run in this process (jobs 1). Each of `injection` and `extract` runs twice:
    from the check's read as the pipeline runs it, then again with its own units; kept: both
    results, the plan, the data set, what the sub-tasks said about the check's read."""
    kept, said = {}, []
    with pytest.MonkeyPatch.context() as patch:
        for name in ("injection", "extract"):
            original = getattr(tp.PumpingTask, name)

            @functools.wraps(original)  # the task gives a sub-task its inputs by its signature
            def twice(self, ctx, _original=original, _name=name, **inputs):
                kept[_name] = result = _original(self, ctx, **inputs)
                with pytest.MonkeyPatch.context() as units_only:
                    units_only.setattr(tp, "FrameMeasures", NoReadouts)
                    kept[f"{_name}_by_units"] = _original(self, ctx, **inputs)
                kept["plan"], kept["dataset"] = inputs["plan"], ctx.dataset
                return result
            patch.setattr(tp.PumpingTask, name, twice)
        say = tp.CheckReadouts.say

        def saying(self, subtask, what):
            said.append((subtask, sorted(self.used), dict(self.not_used)))
            say(self, subtask, what)
        patch.setattr(tp.CheckReadouts, "say", saying)
        campaign = campaign_from_dict({
            "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
            "paths": {"data": str(data), "results": str(folder)},
            "sessions": {"D12": {"tests": [test]}},
        }, base_dir=folder.parent)
        PipelineRun(campaign, RunOptions(session="D12", jobs=1)).run_aim()
    return kept, said


@pytest.fixture(scope="module")
def runs(day, tmp_path_factory):
    return {test: analyse(day, tmp_path_factory.mktemp(test) / "results", test) for test in ("TP01", "TP02")}


ALL_QUADRANTS = sorted(f"CCD{ccd}{q}" for ccd in (1, 2, 3) for q in QUADRANTS)


@pytest.mark.parametrize("test", ["TP01", "TP02"])
def test_the_check_read_gives_every_quadrant_the_numbers_of_the_units(runs, test):
    kept, said = runs[test]
    pipeline_run, units_run = said[0::2], said[1::2]  # each sub-task ran twice: as the pipeline runs it, then alone
    assert pipeline_run == [("injection", ALL_QUADRANTS, {}), ("extract", ALL_QUADRANTS, {})]
    reason = "the check's read made no extraction (check switched off or its sub-tasks not run)"
    assert units_run == [(name, [], {reason: ALL_QUADRANTS}) for name in ("injection", "extract")]
    read, units = kept["injection"].references, kept["injection_by_units"].references
    assert read.keys() == units.keys() and len(read) == 12
    for key, measured in read.items():
        assert (measured.level_adu, measured.noise_adu) == (units[key].level_adu, units[key].noise_adu)
        assert (measured.profile_adu is None) == (test == "TP01")
        assert measured.profile_adu is None or np.array_equal(measured.profile_adu, units[key].profile_adu)
    read, units = kept["extract"].modes, kept["extract_by_units"].modes
    assert read.keys() == units.keys() and len(read) == 12 * (4 if test == "TP01" else 2)
    traps = 0
    for key, mode in read.items():
        other = units[key]
        assert (mode.phase_times_us, mode.obsids, mode.cycles) == (other.phase_times_us, other.obsids, other.cycles)
        assert mode.traps.traps == other.traps.traps
        assert np.array_equal(mode.traps.amplitudes_e, other.traps.amplitudes_e)
        assert np.array_equal(mode.traps.detected, other.traps.detected)
        assert mode.traps.sigma_e == other.traps.sigma_e
        traps += len(mode.traps.traps)
    assert traps > 12  # the simulator's traps were found (their recovery: test_analysis_tp_persist.py)


def test_consumers_one_after_the_other_reuse_the_kept_arrays_to_the_same_numbers(runs):
    """The arrays a consumer keeps go back to the pool with its result; the next takes them,
    overwrites them, and measures the same as the sub-task's units."""
    kept, _ = runs["TP01"]
    plan = kept["plan"]
    frames = kept["dataset"].frames(2)
    readout_plan = tp.ReadoutPlan(plan.direction, tuple(tp.FramePumping.of(f.row) for f in frames))
    tp.KEPT_ARRAYS.clear()
    results = []
    for quadrant in ("E", "F", "E"):
        readout = quadrant_readout_unit((2, quadrant), [(f.path, 0, None) for f in frames], tp.start_consumer,
                                        readout_plan)
        results.append(readout.result)
        pumped = sum(len(frames_of_mode) for frames_of_mode in plan.pumped(2, quadrant).values())
        assert tp.KEPT_ARRAYS.free_count() == pumped  # given back, taken again by the next
    first, again = results[0].modes, results[2].modes  # E, then E in the arrays F overwrote
    assert first.keys() == again.keys() and first
    for mode, (indices, measures) in first.items():
        other = again[mode][1]
        assert again[mode][0] == indices and other.traps == measures.traps
        assert np.array_equal(other.amplitudes_adu, measures.amplitudes_adu)
        assert np.array_equal(other.detected, measures.detected) and other.sigma_level_adu == measures.sigma_level_adu
    for quadrant, result in zip(("E", "F"), results):
        for mode, (_, measures) in result.modes.items():
            expected = kept["extract_by_units"].modes[(2, quadrant, mode)].traps
            assert measures.traps == expected.traps and np.array_equal(measures.detected, expected.detected)
            gain = expected.amplitudes_e[0, 0] / measures.amplitudes_adu[0, 0] if measures.traps else 1.0
            assert np.allclose(measures.amplitudes_adu * gain, expected.amplitudes_e, rtol=1e-12, atol=0)


def test_a_reference_after_the_pumped_frames_gives_the_same_measures(runs):
    """Serial maps need the unpumped profile: fed last, the consumer keeps the pumped profiles
    and makes the maps at the end, to the same numbers."""
    kept, _ = runs["TP02"]
    plan = kept["plan"]
    frames = kept["dataset"].frames(1)
    geometry = plan.geometry
    for order in (frames, frames[::-1]):
        readout_plan = tp.ReadoutPlan(plan.direction, tuple(tp.FramePumping.of(f.row) for f in order))
        readout = quadrant_readout_unit((1, "F"), [(f.path, 0, None) for f in order], tp.start_consumer, readout_plan)
        result = readout.result
        paths = dict(zip(readout.fed, readout.paths))
        assert paths[result.reference] == plan.reference(1, "F").path
        if order is not frames:
            assert result.reference > min(i for indices, _ in result.modes.values() for i in indices)  # fed last
        for mode, frames_of_mode in plan.pumped(1, "F").items():
            indices, measures = result.modes[mode]
            assert [paths[i] for i in indices] == [f.path for f in frames_of_mode]
            expected = kept["extract"].modes[(1, "F", mode)].traps
            assert measures.traps == expected.traps
            gain = expected.amplitudes_e[0, 0] / measures.amplitudes_adu[0, 0] if measures.traps else 1.0
            assert np.allclose(measures.amplitudes_adu * gain, expected.amplitudes_e, rtol=1e-12, atol=0)
    assert geometry.name == "small"
