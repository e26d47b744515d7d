"""PSF01 reads each frame once: the lock's pass reads a bright exposure's three frames together
(psf_lib.xtalk_lock_unit) and makes the cross-talk samples from that read; xtalk_sex takes them
when they were made from the frames it would use, and reads an exposure again otherwise.

One small PSF01_800 day with the simulator's cross-talk, run once in this process (jobs 1, so the
sub-tasks can be watched); xtalk_sex is run twice there: as the pipeline runs it, and with the
lock's samples withheld (the re-reading units, xtalk_exposure_unit, as before this change).
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.formats import fits as fits_format
from engine.formats.geometry import SMALL
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim import elvis
from engine.sim.records import Equipment
from engine.sim.truths import SimOptions
from engine.tasks import psf, registry
from engine.tasks.psf_lib import ExposureXtalk, bright_columns
from engine.tasks.spots import MIN_PEAK_FRACTION, spot_frame_unit

SERIALS = {"roe": "FM14", "rpsu": "FM14", "ccd1": "14888-88-81", "ccd2": "14888-88-82", "ccd3": "14888-88-83"}
EQUIPMENT = Equipment(sn_roe="FM14", sn_rpsu="FM14", sn_ccd1=SERIALS["ccd1"], sn_ccd2=SERIALS["ccd2"],
                      sn_ccd3=SERIALS["ccd3"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The pipeline's xtalk_sex result, the same with the lock's samples withheld, the same with
    one exposure's samples made from other frames, what each said, and the lock."""
    root = tmp_path_factory.mktemp("psf_once")
    elvis.simulate(elvis.SimulationRequest(tests=("PSF01_800",), out=root / "data", chamber=load_chamber("B_NOSTROMO"),
                                           geometry=SMALL, equipment=EQUIPMENT, jobs=2,
                                           options=SimOptions(crosstalk=True)))
    kept: dict = {}
    original = psf.PSFTask.xtalk_sex
    parsed: list[Path] = []  # frames opened through astropy (not mapped from their index)
    original_open = fits_format.Frame._open

    def counted_open(self):
        parsed.append(self.path)
        return original_open(self)

    @functools.wraps(original)  # the task gives a sub-task its inputs by its signature
    def watched(self, ctx, lock):
        kept["parsed_by_the_lock"] = list(parsed)
        said = []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ctx.log, "info", lambda message, *a, **k: said.append(message))
            kept["pipeline"] = original(self, ctx, lock), list(said)
            said.clear()
            kept["withheld"] = original(self, ctx, replace(lock, read_together={})), list(said)
            said.clear()
            first = min(lock.read_together)
            mixed = dict(lock.read_together)
            mixed[first] = replace(mixed[first], paths={ccd: p for ccd, p in mixed[first].paths.items() if ccd != 2})
            kept["mixed"] = original(self, ctx, replace(lock, read_together=mixed)), list(said)
        kept["lock"], kept["first"] = lock, first
        return kept["pipeline"][0]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(psf.PSFTask, "xtalk_sex", watched)
        patch.setattr(fits_format.Frame, "_open", counted_open)
        campaign = campaign_from_dict({
            "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
            "paths": {"data": str(root / "data"), "results": str(root / "results")},
            "sessions": {"D11": {"tests": ["PSF01_800"]}},
        }, base_dir=root, families=registry.campaign_schema())
        PipelineRun(campaign, RunOptions(session="D11", jobs=1)).run_aim()
    return kept


def _same_samples(a, b) -> bool:
    return (a.source.keys() == b.source.keys() and a.victim.keys() == b.victim.keys()
            and all(np.array_equal(a.source[k], b.source[k]) for k in a.source)
            and all(np.array_equal(a.victim[k], b.victim[k], equal_nan=True) for k in a.victim))


def test_the_pipeline_takes_the_crosstalk_from_the_locks_read(run):
    extraction, said = run["pipeline"]
    assert len(extraction.obsids) >= 6 and extraction.read_again == []
    assert f"cross-talk pixels of the {len(extraction.obsids)} exposures from the lock's read" in said
    lock = run["lock"]
    assert sorted(lock.read_together) == sorted(extraction.obsids)  # the bright exposures, and only them
    assert all(isinstance(x, ExposureXtalk) and x.samples is not None for x in lock.read_together.values())
    columns = {lock.info[key].column for key in lock.frames if key[0] in lock.read_together}
    assert columns == set(bright_columns(lock)) and len(columns) < len(lock.columns())


def test_the_locks_samples_are_those_of_the_frames_read_again(run):
    """Bit for bit: the same counts, levels and own spots, whichever unit read them."""
    extraction, _ = run["pipeline"]
    again, said = run["withheld"]
    assert again.read_again == again.obsids == extraction.obsids
    assert any("the lock's read did not read its frames together" in message for message in said)
    assert len(extraction.samples) == len(again.samples)
    for mine, theirs in zip(extraction.samples, again.samples):
        assert _same_samples(mine, theirs)
    assert sum(len(s) for x in extraction.samples for s in x.source.values()) > 100  # bright pixels were there


def test_an_exposure_not_read_together_as_now_is_read_again_alone_and_the_log_says_why(run):
    extraction, _ = run["pipeline"]
    mixed, said = run["mixed"]
    assert mixed.read_again == [run["first"]]
    assert any("1 read again (the lock's read had frames of CCDs [1, 3], now [1, 2, 3])" in m for m in said)
    for mine, theirs in zip(extraction.samples, mixed.samples):
        assert _same_samples(mine, theirs)


def test_the_lock_maps_every_frame_from_its_index(run):
    """The lock's units (one frame, or an exposure's frames together) get each frame's index from
    the run's process and map its pixels without astropy: a worker then never imports astropy
    (0.3 s, most of a small test's first unit) nor parses headers."""
    assert run["lock"].frames and run["parsed_by_the_lock"] == []


def test_frames_read_together_get_the_lock_numbers_of_the_frame_unit(run):
    """The lock's result and the check's statistics of a frame read with its exposure are those
    spot_frame_unit gives it (the same function on the same counts)."""
    lock = run["lock"]
    together = [key for key in sorted(lock.frames) if key[0] in lock.read_together]
    assert len(together) == 3 * len(lock.read_together)
    for key in together:
        info = lock.info[key]
        expected = lock.expected_peak_adu(info.exptime_s)
        floor = MIN_PEAK_FRACTION * expected if math.isfinite(expected) else 0.0
        alone = spot_frame_unit(Path(info.path), 0, None, lock.pattern, floor)
        assert repr(alone) == repr(lock.frames[key]), key  # repr: NaN-safe, every float exactly
    assert sum(len(q.spots) for key in together for q in lock.frames[key].quadrants.values()) > 0
