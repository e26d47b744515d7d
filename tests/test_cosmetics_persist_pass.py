"""COSMETICS00, PERSIST01 and MOT_WARM from the check's read (Family.per_quadrant: cosmetics
DefectsConsumer, persist PersistConsumer, motwarm LookConsumer): in an aim-mode run each sub-task
that used to read the frames again takes the consumers' results for every quadrant, and those
are the numbers of the sub-task's own units (run again on the same inputs with the check's read
taken away) exactly: the same functions on the same counts and offsets, so no error budget.
The compiled median of the defect map is np.median's bit for bit, for odd and even counts.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from sim_days import EQUIPMENT, SERIALS

from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.formats.geometry import QUADRANTS, SMALL
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim import elvis
from engine.tasks import cosmetics, motwarm, persist
from engine.tasks.quadrant_pass import quadrant_readout_unit
from engine.tasks.stacking import median_of_stack

TESTS = ("COSMETICS00", "PERSIST01", "MOT_WARM")
ALL_QUADRANTS = [f"CCD{ccd}{q}" for ccd in (1, 2, 3) for q in QUADRANTS]
SUBTASKS = {  # test -> (module, task class, the sub-tasks that read the frames again before)
    "COSMETICS00": (cosmetics, cosmetics.CosmeticsTask, ("masks",)),
    "PERSIST01": (persist, persist.PersistenceTask, ("satur_masks", "basic")),
    "MOT_WARM": (motwarm, motwarm.WarmTask, ("basic",)),
}


@pytest.mark.parametrize("frames", [1, 2, 5, 6, 11])
def test_the_compiled_median_is_numpys_bit_for_bit(frames):
    """Counts with ties and a spread over the whole ADC range, fractional offsets: the median of
    the first `frames` planes of a larger stack equals np.median of the float32 cube."""
    rng = np.random.default_rng(frames)
    cube = rng.integers(0, 65536, (frames + 2, 9, 13)).astype(np.uint16)
    cube[:, 0] = rng.integers(1000, 1003, (frames + 2, 13))  # ties
    offsets = np.float32(1000 + rng.uniform(-5, 5, frames))
    want = np.median(cube[:frames].astype(np.float32) - offsets[:, None, None], axis=0)
    got = median_of_stack(cube, frames, offsets)
    assert got.dtype == np.float32 and np.array_equal(got, want)


class NoReadouts:
    """Stands for the check's measurements without the consumers' results: the sub-tasks' own units."""

    readouts: ClassVar[dict] = {}

    @classmethod
    def produce(cls, ctx):
        return cls()


class Said(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def analyse(data: Path, folder: Path, test: str):
    """One aim-mode run (jobs 1). Each sub-task of SUBTASKS runs twice: as the pipeline runs it
    (what it logged is kept), then with its own units; kept: both results."""
    module, task, names = SUBTASKS[test]
    kept, said = {}, {}
    with pytest.MonkeyPatch.context() as patch:
        for name in names:
            original = getattr(task, name)

            @functools.wraps(original)  # the task gives a sub-task its inputs by its signature
            def twice(self, ctx, *args, _original=original, _name=name, **inputs):
                handler = Said()
                ctx.log.addHandler(handler)
                try:
                    kept[_name] = result = _original(self, ctx, *args, **inputs)
                    kept[f"{_name}_inputs"] = inputs
                finally:
                    ctx.log.removeHandler(handler)
                said[_name] = handler.messages
                with pytest.MonkeyPatch.context() as units_only:
                    units_only.setattr(module, "FrameMeasures", NoReadouts)
                    kept[f"{_name}_by_units"] = _original(self, ctx, *args, **inputs)
                return result
            patch.setattr(task, name, twice)
        campaign = campaign_from_dict({
            "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
            "paths": {"data": str(data), "results": str(folder)},
            "sessions": {"D13": {"tests": [test]}},
            "limits": {"persist": {"saturated_fraction": [0.002, 1.0]}},  # the small spot saturates much
        }, base_dir=folder.parent)
        PipelineRun(campaign, RunOptions(session="D13", jobs=1)).run_aim()
    return kept, said


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("day") / "data"
    elvis.simulate(elvis.SimulationRequest(tests=TESTS, out=out, chamber=load_chamber("B_NOSTROMO"), geometry=SMALL,
                                           equipment=EQUIPMENT, jobs=2))
    return out


@pytest.fixture(scope="module")
def runs(day, tmp_path_factory):
    return {test: analyse(day, tmp_path_factory.mktemp(test) / "results", test) for test in TESTS}


def from_read_only(said: list[str], subtask: str, what: str):
    """Every quadrant (or frame) from the check's read, none read again."""
    assert not [m for m in said if "read again" in m], said
    used = [m for m in said if m.startswith(f"{subtask}: ") and "from the check's read" in m]
    assert len(used) == 1 and all(w in used[0] for w in what), said


def test_cosmetics_masks_are_the_units_from_the_checks_read(runs):
    kept, said = runs["COSMETICS00"]
    from_read_only(said["masks"], "masks", ALL_QUADRANTS)
    read, units = kept["masks"].defects, kept["masks_by_units"].defects
    assert read.keys() == units.keys() and len(read) == 12
    flagged = 0
    for key, found in read.items():
        assert np.array_equal(found.bits, units[key].bits) and found.used == units[key].used
        flagged += found.masked
    assert flagged > 12  # the simulator's defects are there (their recovery: test_analysis_chinj_cosmetics_motwarm)


def test_persistence_footprints_and_levels_are_the_units_from_the_checks_read(runs):
    kept, said = runs["PERSIST01"]
    from_read_only(said["satur_masks"], "satur_masks", ALL_QUADRANTS)
    from_read_only(said["basic"], "basic", ALL_QUADRANTS)
    read, units = kept["satur_masks"].footprints, kept["satur_masks_by_units"].footprints
    assert read.keys() == units.keys() and len(read) == 12
    for key, footprint in read.items():
        assert np.array_equal(footprint.packed, units[key].packed) and footprint.pixels == units[key].pixels > 0
        assert footprint.plateau_adu == units[key].plateau_adu
    read, units = kept["basic"].levels, kept["basic_by_units"].levels
    assert read == units and len(read) == 12
    roles = {d.role for levels in read.values() for d in levels}
    assert roles == {"REFER", "LATENT"}


def test_warm_looks_are_the_units_from_the_checks_read(runs):
    kept, said = runs["MOT_WARM"]
    from_read_only(said["basic"], "basic", ("CCD1 CHINJ", "CCD3 FLAT", "CCD2 BIAS_RVS"))
    read, units = kept["basic"].verdicts, kept["basic_by_units"].verdicts
    assert read == units and len(read) == 12
    assert all(v["injection"].status != "fail" and v["bits"].status == "pass" for v in read.values())


def test_a_persist_consumer_fed_the_expose_frame_first_measures_the_refer_darks_alike(runs):
    """The REFER darks are kept until the footprint is known: fed after it (here: the EXPOSE
    frame moved first) they give the same levels as in OBSID order, and those of the pipeline."""
    kept, _ = runs["PERSIST01"]
    plan = kept["satur_masks_inputs"]["plan"]
    frames = plan.frames[1]
    roles, obsids = tuple(f.role for f in frames), tuple(f.frame.obsid for f in frames)
    floors = {q: 150000.0 / 3.5 for q in QUADRANTS}
    in_order = persist.ReadPlan(roles, obsids, roles.index("EXPOSE"), floors)
    order = [in_order.expose, *[i for i in range(len(frames)) if i != in_order.expose]]
    moved = persist.ReadPlan(tuple(roles[i] for i in order), tuple(obsids[i] for i in order), 0, floors)
    first = quadrant_readout_unit((1, "H"), [(f.frame.path, 0, None) for f in frames], persist.start_persist, in_order)
    second = quadrant_readout_unit((1, "H"), [(frames[i].frame.path, 0, None) for i in order], persist.start_persist,
                                   moved)
    assert not first.error and not second.error
    assert np.array_equal(first.result.footprint.packed, second.result.footprint.packed)
    assert np.array_equal(first.result.footprint.packed, kept["satur_masks"].footprints[(1, "H")].packed)
    levels = sorted(first.result.levels.values(), key=lambda d: d.obsid)
    assert levels == sorted(second.result.levels.values(), key=lambda d: d.obsid) == kept["basic"].levels[(1, "H")]
    assert roles.index("EXPOSE") > roles.index("REFER")  # in OBSID order the REFER darks did wait
