"""Issue 16, items 8 and 9: a full or read-only results disk, an unreadable EXP_LOG.

A full disk must never kill a run with SIGBUS (masters are written through a memory map), nor
leave it without its summary and state; the inputs a run cannot read are one line, not a traceback.
Full disks are real tmpfs mounts where this machine allows it (root, mount); else those tests
skip, and a disk reported full (shutil.disk_usage) stands for it.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

from engine.cli.main import main as cli
from engine.tasks import stacking
from sim_days import bias_dark_day

ENGINE = [sys.executable, "-m", "engine.cli"]


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    return bias_dark_day(tmp_path_factory.mktemp("data"))


@pytest.fixture
def small_disk(tmp_path):
    """A 400 kB tmpfs: the master biases of BIAS01 (3 x 190 kB) do not fit."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs a tmpfs mount, which needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def run_state(results: Path) -> dict:
    [state] = list((results / "runs").glob("*/state.json"))
    return json.loads(state.read_text())


def test_a_full_results_disk_fails_the_test_and_the_run_without_sigbus(day, small_disk):
    results = small_disk / "results"
    done = subprocess.run([*ENGINE, "run", "--data", str(day), "--tests", "BIAS01", "DARK01", "--results",
                           str(results)], capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])  # -7 was SIGBUS
    assert "Traceback" not in done.stdout + done.stderr
    assert "error: the results disk is full: BIAS01 failed" in done.stderr and "no space left" in done.stderr
    assert "Summary of run" in done.stdout and "BIAS01  ERRORS" in done.stdout
    state = run_state(results)
    assert state["state"] == "failed" and "results disk is full" in state["end_reason"] and state["exit_code"] == 1
    assert [(t["test"], t["state"]) for t in state["tests"]] == [("BIAS01", "errors"), ("DARK01", "waiting")]
    record = json.loads((results / "QUICK" / "BIAS01" / "result.json").read_text())
    assert record["subtasks"]["meta"] == "failed" and not list((results / "QUICK" / "BIAS01").glob("**/EUC_MASTER*"))


def test_a_product_that_does_not_fit_is_refused_not_left_sparse(small_disk):
    path = small_disk / "master.fits"
    with pytest.raises(OSError) as caught:
        stacking.allocate_fits(path, fits.Header(), ("STACK", "STD"), (1000, 1000))  # 8 MB on 400 kB
    assert caught.value.errno == errno.ENOSPC
    assert not path.exists()


def test_allocated_products_hold_real_blocks(tmp_path):
    path = tmp_path / "master.fits"
    offsets = stacking.allocate_fits(path, fits.Header(), ("STACK", "STD"), (200, 300))
    info = path.stat()
    assert info.st_blocks * 512 >= info.st_size - 2880  # not sparse: a full disk cannot surprise the memmap
    with fits.open(path) as hdus:
        assert hdus["STD"].data.shape == (200, 300) and not hdus["STD"].data.any()
    assert sorted(offsets) == ["STACK", "STD"]


def test_a_disk_reported_full_fails_the_test_and_writes_summary_and_state(day, tmp_path, capsys, monkeypatch):
    real = shutil.disk_usage

    def full(path):
        usage = real(path)
        return type(usage)(usage.total, usage.total - 1000, 1000)

    monkeypatch.setattr(stacking.shutil, "disk_usage", full)
    results = tmp_path / "results"
    code = cli(["run", "--data", str(day), "--tests", "BIAS01", "--results", str(results)])
    out = capsys.readouterr()
    assert code == 1 and "Traceback" not in out.err
    assert "error: the results disk is full" in out.err and "Summary of run" in out.out
    state = run_state(results)
    assert state["state"] == "failed" and state["tests"][0]["state"] == "errors"
    log = next((results / "logs").glob("Calib_*.log")).read_text()
    assert "Pipeline failed" in log and "BIAS01" in log


@pytest.fixture
def read_only(tmp_path):
    """A folder no one may write: chmod for a user, a read-only tmpfs for root (whom chmod does not stop)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k,ro", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"running as root, and cannot mount a read-only tmpfs: {done.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_read_only_results_root_is_one_line(day, read_only, capsys):
    code = cli(["run", "--data", str(day), "--tests", "BIAS01", "--results", str(read_only)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: results folder {read_only} cannot be written")
    assert "Traceback" not in err


def test_an_unreadable_exp_log_is_one_line(day, tmp_path, capsys):
    copy = tmp_path / "data" / day.name
    shutil.copytree(day, copy)
    explog = next(copy.glob("EXP_LOG_*.txt"))
    explog.unlink()
    explog.mkdir()  # unreadable, as root too
    code = cli(["run", "--data", str(copy), "--tests", "BIAS01", "--results", str(tmp_path / "r")])
    out = capsys.readouterr()
    assert code == 1 and "Traceback" not in out.err + out.out
    assert f"error: EXP_LOG {explog} cannot be read (Is a directory)" in out.err
    assert run_state(tmp_path / "r")["state"] == "failed"
