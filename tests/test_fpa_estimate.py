"""bench/fpa_estimate.py: its totals are the sum of its rows, its bytes those of a written LE1 frame."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.campaign.catalogue import CATALOGUE
from engine.campaign.chamber import load_chamber
from engine.formats.le1 import LE1_FULL, LE1_SMALL
from engine.sim.le1 import write_le1_frame

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "fpa_estimate.py"


@pytest.fixture(scope="module")
def fpa_estimate():
    spec = importlib.util.spec_from_file_location("fpa_estimate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_totals_are_the_sum_of_the_rows(fpa_estimate):
    rows = fpa_estimate.estimate()
    everything = fpa_estimate.total(rows)
    assert len(rows) == len(fpa_estimate.campaign_tests())
    assert everything.exposures == sum(r.exposures for r in rows)
    assert everything.bytes == sum(r.bytes for r in rows)
    assert everything.core_hours == pytest.approx(sum(r.core_hours for r in rows), rel=1e-12)
    for workers in fpa_estimate.WORKERS:
        for bandwidth in fpa_estimate.BANDWIDTHS_GB_S:
            walls = [r.wall_s(workers, bandwidth) for r in rows]
            assert fpa_estimate.campaign_wall_s(rows, workers, bandwidth) == pytest.approx(sum(walls), rel=1e-12)
            # each test is bounded below by both its CPU on N workers and its reads
            for r, wall in zip(rows, walls):
                assert wall >= r.cpu_bound_s(workers) and wall >= r.io_bound_s(bandwidth)
    # a row's exposures are the catalogue's with the default chamber, its CPU 144 quadrants' worth
    chamber = load_chamber()
    flat01 = next(r for r in rows if r.test == "FLAT01")
    assert flat01.exposures == CATALOGUE["FLAT01"].total_frames(chamber)
    assert flat01.cpu_s == pytest.approx(fpa_estimate.cost_of("flat").seconds * 144 * flat01.exposures)
    assert flat01.fpa_today and not next(r for r in rows if r.test == "NL02").fpa_today


def test_exposure_bytes_match_the_le1_geometry(fpa_estimate, tmp_path):
    """Full size: 144 quadrants of 2128 x 2086 uint16 (1.278 GB) plus headers and FITS padding, under
    one block an HDU more; small: exactly the size of the frame the simulator writes."""
    pixels_bytes = 144 * 2128 * 2086 * 2
    full = fpa_estimate.le1_exposure_bytes(LE1_FULL)
    assert pixels_bytes < full < pixels_bytes + 145 * 2 * 2880
    assert full % 2880 == 0

    def blank(place):
        return np.zeros((LE1_SMALL.quad_height, LE1_SMALL.quad_width), np.uint16)

    written = write_le1_frame(tmp_path / "frame.fits", blank, LE1_SMALL)
    assert written.stat().st_size == fpa_estimate.le1_exposure_bytes(LE1_SMALL)
    assert math.isclose(full / 1e9, 1.279, abs_tol=0.001)
