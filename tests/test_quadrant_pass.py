"""The check's read feeding a family's extraction (quadrant_pass.py, Family.per_quadrant): the same
numbers as the frame-by-frame measurement, the consumer fed exactly what was read, a bad frame or a
failing consumer costing the check nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.formats.fits import read_frame
from engine.tasks.measures import frame_stats, frame_unit
from engine.tasks.quadrant_pass import quadrant_readout_unit
from sim_days import bias_dark_day


class Recorder:
    """A consumer keeping a checksum of what it got (module-level: picklable like a family's)."""

    def __init__(self, quadrant, geometry, plan):
        self.quadrant, self.plan, self.seen = quadrant, plan, []

    def add(self, index, counts, stats):
        if index == self.plan.get("fail_at"):
            raise ValueError("no injection found")
        self.seen.append((index, int(counts.astype(np.int64).sum()), counts.shape, stats.prescan.clipped_mean))

    def result(self):
        return self.seen


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    day = bias_dark_day(tmp_path_factory.mktemp("day"))
    return sorted(day.glob("EUC_*_CCD1.fits"))[:4]


def calls(paths):
    return [(p, 0, None) for p in paths]


def test_measures_are_the_frame_by_frame_ones_and_the_consumer_gets_the_quadrant_as_read(frames):
    readout = quadrant_readout_unit((1, "F"), calls(frames), Recorder, {})
    assert not readout.error and readout.fed == (0, 1, 2, 3) and readout.paths == tuple(frames)
    for i, path in enumerate(frames):
        assert readout.measures[i] == frame_stats(path)["F"]
        with read_frame(path) as frame:
            counts = frame.section(*frame.geometry.quadrant_slices("F"))
        index, checksum, shape, offset = readout.result[i]
        assert (index, checksum, shape) == (i, int(counts.astype(np.int64).sum()), counts.shape)
        assert offset == readout.offsets[i] == frame_stats(path)["F"].prescan.clipped_mean
    assert readout.matches(frames[1:3], readout.offsets[1:3])
    assert not readout.matches(frames[1:3], (readout.offsets[1] + 0.5, readout.offsets[2]))  # another offset
    assert not readout.matches([frames[0].with_name("other.fits")])


def test_an_unreadable_frame_is_said_as_the_frame_unit_says_it_and_not_fed(frames, tmp_path):
    broken = tmp_path / frames[1].name
    broken.write_bytes(frames[1].read_bytes()[:5000])  # truncated in its header
    paths = [frames[0], broken, frames[2]]
    readout = quadrant_readout_unit((1, "E"), calls(paths), Recorder, {})
    assert readout.measures[1] == frame_unit(broken, 0, None)
    assert readout.fed == (0, 2) and [seen[0] for seen in readout.result] == [0, 2]
    assert not readout.matches([broken])


def test_a_failing_consumer_leaves_the_measurements_and_says_why(frames):
    readout = quadrant_readout_unit((1, "G"), calls(frames), Recorder, {"fail_at": 2})
    assert "ValueError: no injection found" in readout.error and frames[2].name in readout.error
    assert readout.result is None and not readout.matches(frames[:1])
    assert all(readout.measures[i] == frame_stats(p)["G"] for i, p in enumerate(frames))


def test_without_a_consumer_it_only_measures(frames):
    readout = quadrant_readout_unit((1, "H"), calls(frames[:2]), None, None)
    assert readout.fed == () and readout.result is None and not readout.error
    assert readout.measures[0] == frame_stats(frames[0])["H"]


class Keeper(Recorder):
    """A consumer keeping every frame's counts without copying, as PTC's and TP's do."""

    def add(self, index, counts, stats):
        self.seen.append(counts)

    def result(self):
        return [int(c.astype(np.int64).sum()) for c in self.seen]


def test_the_counts_handed_over_may_be_kept(frames):
    """The pass gives each frame a fresh array: one kept by the consumer is not overwritten by the
    next frame's read (a reused buffer would silently turn every kept pair into the last frame)."""
    readout = quadrant_readout_unit((1, "E"), calls(frames), Keeper, {})
    expected = []
    for path in frames:
        with read_frame(path) as frame:
            expected.append(int(frame.section(*frame.geometry.quadrant_slices("E")).astype(np.int64).sum()))
    assert readout.result == expected and len(set(expected)) == len(expected)
