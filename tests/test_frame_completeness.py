"""One 'is this frame file complete' policy (engine.formats.fits.FrameCompleteness), shared by the
monitor and wait mode: whole FITS structure with valid header values, and size and mtime
unchanged for the stable time on an injectable clock. Bad headers are named and skipped, never
hang. (Wait mode's use of it: tests/test_pipeline_modes.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.campaign.chamber import load_chamber
from engine.formats.fits import MAX_HEADER_BLOCKS, FrameCompleteness, check_fits
from engine.formats.geometry import SMALL
from engine.monitor import FrameArrived, Monitor, MonitorNotice, MonitorSettings
from engine.sim.elvis import SimulationRequest, simulate


class FakeClock:
    """Wall-clock seconds that move only when the test says."""

    def __init__(self, start: float = 1_000_000.0):
        self.t = start

    def __call__(self) -> float:
        return self.t

    def touch(self, path: Path) -> None:
        """Stamp the file's mtime with the fake now (as if written at this instant)."""
        stamp = int(self.t * 1e9)
        os.utime(path, ns=(stamp, stamp))


@pytest.fixture(scope="module")
def frame_bytes(tmp_path_factory) -> tuple[str, bytes]:
    """(name, bytes) of one simulated small frame."""
    out = tmp_path_factory.mktemp("sim")
    result = simulate(SimulationRequest(tests=("BIAS01",), out=out, chamber=load_chamber("B_NOSTROMO"),
                                        geometry=SMALL, jobs=1))
    frame = sorted(result.day_folder.glob("EUC_*.fits"))[0]
    return frame.name, frame.read_bytes()


def with_card(data: bytes, key: str, value: str, **more: str) -> bytes:
    """The frame with cards of the image extension's header replaced (same size)."""
    out = bytearray(data)
    for key, value in {key: value, **more}.items():
        at = out.index(f"{key:<8}= ".encode(), 2880)
        out[at:at + 80] = f"{key:<8}= {value:>20}".ljust(80).encode()
    return bytes(out)


# -- the FITS structure ---------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, why", [
    ("NAXIS1", "-15", "NAXIS1 = -15 outside"),  # sent the walk back to offset 0: an endless loop
    ("NAXIS1", "-100000", "NAXIS1 = -100000 outside"),  # before the file's start
    ("NAXIS2", "999999999999", "NAXIS2 = 999999999999 outside"),
    ("NAXIS1", "900000", "absurd for a frame"),  # each axis within its bound, not the whole HDU
    ("BITPIX", "12", "BITPIX = 12 is not one of"),
    ("NAXIS", "-2", "NAXIS = -2 outside"),
    ("NAXIS1", "'wide'", "is not an integer"),
])
def test_bad_header_values_are_named_never_trusted(frame_bytes, tmp_path, key, value, why):
    name, data = frame_bytes
    path = tmp_path / name
    more = {"NAXIS2": "900000"} if why == "absurd for a frame" else {}
    path.write_bytes(with_card(data, key, value, **more))
    check = check_fits(path)  # would hang or raise before the values were checked
    assert not check.complete and check.broken
    assert why in check.reason and "HDU 1" in check.reason


def test_truncated_files_are_incomplete_not_broken(frame_bytes, tmp_path):
    name, data = frame_bytes
    path = tmp_path / name
    for cut in (100, 2880, 2880 * 2, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        check = check_fits(path)
        assert not check.complete and not check.broken, (cut, check)
    path.write_bytes(data + b"\0" * 2880)  # bytes after the end: writing on cannot mend it
    assert check_fits(path).broken
    path.write_bytes(data)
    assert check_fits(path).complete


def test_a_header_without_end_is_read_a_bounded_number_of_blocks(tmp_path):
    path = tmp_path / "EUC_1000_120319D090000T_CCD1.fits"
    path.write_bytes(b"SIMPLE  =                    T".ljust(80) + b" " * (2880 * (MAX_HEADER_BLOCKS + 5) - 80))
    check = check_fits(path)
    assert check.broken and f"no END card in {MAX_HEADER_BLOCKS} header blocks" in check.reason


# -- stability on the injected clock --------------------------------------------------------------

def test_whole_and_unchanged_for_the_stable_time(frame_bytes, tmp_path):
    name, data = frame_bytes
    clock = FakeClock()
    policy = FrameCompleteness(stable_s=1.0, clock=clock)
    path = tmp_path / name
    assert policy.look(path).state == "missing"
    path.write_bytes(data[: len(data) // 2])
    clock.touch(path)
    assert policy.look(path).state == "incomplete"
    clock.t += 5.0  # a writer that pauses: still not whole, however long it waits
    assert policy.look(path).state == "incomplete"
    with open(path, "ab") as handle:
        handle.write(data[len(data) // 2:])
    clock.touch(path)
    assert policy.look(path).state == "settling"
    clock.t += 0.99
    assert policy.look(path).state == "settling"
    clock.t += 0.01
    look = policy.look(path)
    assert look.complete and look.size == len(data)
    path.unlink()  # found complete: not looked at again until forgotten
    assert policy.look(path).complete
    policy.forget(path)
    assert policy.look(path).state == "missing"


def test_an_old_file_counts_at_the_first_look_a_changed_one_starts_again(frame_bytes, tmp_path):
    name, data = frame_bytes
    clock = FakeClock()
    policy = FrameCompleteness(stable_s=1.0, clock=clock)
    old, fresh = tmp_path / "old" / name, tmp_path / "fresh" / name
    for path in (old, fresh):
        path.parent.mkdir()
        path.write_bytes(data)
    clock.touch(old)
    clock.t += 1.0
    clock.touch(fresh)
    assert policy.look(old).complete  # written 1 s ago by its mtime: a folder opened after the fact
    assert policy.look(fresh).state == "settling"
    clock.t += 0.5
    fresh.write_bytes(data)  # rewritten (same size, new mtime): the stable time starts again
    clock.touch(fresh)
    clock.t += 0.6
    assert policy.look(fresh).state == "settling"
    clock.t += 0.4
    assert policy.look(fresh).complete


def test_a_broken_file_is_judged_again_only_when_it_changes(frame_bytes, tmp_path):
    name, data = frame_bytes
    clock = FakeClock()
    policy = FrameCompleteness(stable_s=1.0, clock=clock)
    path = tmp_path / name
    path.write_bytes(with_card(data, "NAXIS1", "-15"))
    clock.touch(path)
    look = policy.look(path)
    assert look.state == "broken" and "NAXIS1 = -15" in look.detail
    clock.t += 0.1
    path.write_bytes(data)  # replaced by a good copy: a new mtime
    clock.touch(path)
    assert policy.look(path).state == "settling"
    clock.t += 1.0
    assert policy.look(path).complete


# -- the monitor's use ----------------------------------------------------------------------------

def _monitor(day: Path, tmp_path: Path, clock: FakeClock) -> Monitor:
    settings = MonitorSettings(settle_seconds=1.0, poll_seconds=0.1, polling="polling")
    return Monitor(day, settings, state_path=tmp_path / "state.json", clock=clock)


def test_the_monitor_reports_a_frame_once_whole_and_settled(frame_bytes, tmp_path):
    name, data = frame_bytes
    day = tmp_path / "12_Mar_19"
    day.mkdir()
    clock = FakeClock()
    monitor = _monitor(day, tmp_path, clock)
    path = day / name
    path.write_bytes(data[:5000])
    clock.touch(path)
    arrived = lambda events: [e for e in events if isinstance(e, FrameArrived)]  # noqa: E731
    assert not arrived(monitor.scan())
    clock.t += 10.0  # settled by its mtime, but not whole
    assert not arrived(monitor.scan())
    with open(path, "ab") as handle:
        handle.write(data[5000:])
    clock.touch(path)
    assert not arrived(monitor.scan())  # whole, not yet settled
    clock.t += 1.0
    [event] = arrived(monitor.scan())
    assert event.name == name and event.size == len(data)
    assert not arrived(monitor.scan())  # once
    monitor.close("test")


def test_the_monitor_names_a_bad_frame_once_and_skips_it(frame_bytes, tmp_path):
    name, data = frame_bytes
    day = tmp_path / "12_Mar_19"
    day.mkdir()
    clock = FakeClock()
    monitor = _monitor(day, tmp_path, clock)
    path = day / name
    path.write_bytes(with_card(data, "NAXIS1", "-15"))
    clock.touch(path)
    clock.t += 5.0
    notices = [e for e in monitor.scan() if isinstance(e, MonitorNotice) and name in e.text]
    assert len(notices) == 1 and notices[0].level == "warning" and "NAXIS1 = -15" in notices[0].text
    assert not [e for e in monitor.scan() if isinstance(e, MonitorNotice) and name in e.text]  # said once
    clock.t += 0.1
    path.write_bytes(data)  # replaced by a good copy
    clock.touch(path)
    clock.t += 1.0
    assert [e for e in monitor.scan() if isinstance(e, FrameArrived)]
    monitor.close("test")
