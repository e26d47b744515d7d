"""Clean-up removes exactly the chosen kinds, asks first, and never touches anything outside the root."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.process import process_start_ticks
from engine.pipeline.cleanup import (CleanupError, RefusedRoot, ROUTINE_KINDS, execute, kinds_except,
                                     plan_cleanup)

DAY_AGO = time.time() - 86400
STAGING = "D11/.BIAS02.staging-FM20190312_100000"
PREVIOUS = "D11/BIAS01.previous-20190312T090000"


def write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def make_test_folder(folder: Path) -> None:
    write(folder / "result.json", 50)
    write(folder / "report.md", 60)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A results tree with every kind, two run records (one alive) and links pointing outside."""
    outside = tmp_path / "outside"
    write(outside / "keep.txt", 10)
    write(outside / "dir" / "keep.fits", 10)
    make_test_folder(outside / "sessions" / "BIAS01")
    write(outside / "sessions" / "BIAS01" / "figs" / "x.png", 10)

    root = tmp_path / "results"
    bias = root / "D11" / "BIAS01"
    make_test_folder(bias)
    write(bias / "products" / "master_bias_CCD1.fits", 1000)
    write(bias / "products" / "offsets.csv", 100)
    write(bias / "products" / "intermediate" / "prep_0001.fits", 5000)
    write(bias / "products" / "intermediate" / "prep_0002.fits", 5000)
    write(bias / "figs" / "a.png", 200)
    write(bias / "figs" / "b.png", 300)
    (bias / "figs" / "outside_link").symlink_to(outside / "keep.txt")  # a link inside a removed folder

    previous = root / PREVIOUS
    make_test_folder(previous)
    write(previous / "products" / "master_bias_CCD1.fits", 1000)
    write(previous / "products" / "intermediate" / "x.fits", 700)
    write(previous / "figs" / "a.png", 200)

    write(root / STAGING / "products" / "partial.fits", 400)
    write(root / "D11" / ".DARK01.staging-liverun" / "products" / "p.fits", 400)  # of the running run

    dark = root / "D11" / "DARK01"
    make_test_folder(dark)
    write(dark / "products" / "dark.fits", 800)
    (dark / "figs").symlink_to(outside / "dir", target_is_directory=True)  # a planned path linking out

    make_test_folder(root / "D12" / "BIAS01")
    write(root / "D12" / "BIAS01" / "figs" / "c.png", 50)
    (root / "D13").symlink_to(outside / "sessions", target_is_directory=True)  # a linked session

    write(root / "logs" / "Calib_FM20190312_090000.log", 120)
    write(root / "runs" / "deadrun" / "run.json", 0).write_text(json.dumps({"pid": dead_pid()}))
    write(root / "runs" / "liverun" / "run.json", 0).write_text(  # as runs record it: pid and its start time
        json.dumps({"pid": os.getpid(), "pid_start": process_start_ticks(os.getpid())}))

    # everything old, so nothing counts as "changed recently"
    for folder, dirs, files in os.walk(tmp_path):
        for name in dirs + files:
            os.utime(Path(folder) / name, (DAY_AGO, DAY_AGO), follow_symlinks=False)
    return root


def listing(folder: Path) -> set[str]:
    found = set()
    for parent, dirs, files in os.walk(folder):  # links are listed, not followed
        for name in dirs + files:
            found.add(str((Path(parent) / name).relative_to(folder)))
    return found


def outside_intact(root: Path) -> None:
    outside = root.parent / "outside"
    assert (outside / "keep.txt").read_bytes() == b"x" * 10
    assert (outside / "dir" / "keep.fits").read_bytes() == b"x" * 10
    assert (outside / "sessions" / "BIAS01" / "figs" / "x.png").is_file()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- the plan -------------------------------------------------------------------------------------


def test_plan_counts_files_and_bytes_per_kind(tree: Path) -> None:
    plan = plan_cleanup(tree, ROUTINE_KINDS)
    totals = {kind: (t.items, t.files, t.bytes) for kind, t in plan.totals().items()}
    run_record = (tree / "runs" / "deadrun" / "run.json").stat().st_size
    assert totals == {
        "staging": (1, 1, 400),
        "previous": (1, 5, 50 + 60 + 1000 + 700 + 200),
        "intermediates": (1, 2, 10000),
        "figures": (2, 4, 200 + 300 + 50),  # the inner link counts as a file of no size
        "products": (3, 3, 1000 + 100 + 800),
        "runs": (1, 1, run_record),
    }
    assert plan.files == sum(t[1] for t in totals.values())
    assert plan.bytes == sum(t[2] for t in totals.values())
    kept = {str(k.path.relative_to(tree)): k.reason for k in plan.kept}
    assert "outside the results root" in kept["D11/DARK01/figs"]
    assert "pid" in kept["runs/liverun"] and "alive" in kept["runs/liverun"]
    assert "liverun" in kept["D11/.DARK01.staging-liverun"]
    assert any("D13" in note and "not followed" in note for note in plan.notes)


def test_keep_is_routine_kinds_minus_those_named() -> None:
    assert kinds_except(["products", "figures"]) == ("staging", "previous", "intermediates", "runs")
    with pytest.raises(CleanupError, match="known"):
        kinds_except(["pickles"])


def test_sessions_and_tests_filter(tree: Path) -> None:
    plan = plan_cleanup(tree, ["figures", "runs"], sessions=["D12"])
    assert [str(i.path.relative_to(tree)) for i in plan.items] == ["D12/BIAS01/figs"]
    assert any("not per session" in note for note in plan.notes)
    plan = plan_cleanup(tree, ["products"], tests=["DARK01", "FLAT01"])
    assert [str(i.path.relative_to(tree)) for i in plan.items] == ["D11/DARK01/products/dark.fits"]
    assert any("FLAT01" in note for note in plan.notes)


def test_recent_staging_folder_is_kept(tree: Path) -> None:
    write(tree / "D11" / ".BIAS01.staging-FM20190312_120000" / "products" / "new.fits", 10)
    plan = plan_cleanup(tree, ["staging"])
    kept = {k.path.name: k.reason for k in plan.kept}
    assert "in progress" in kept[".BIAS01.staging-FM20190312_120000"]


# -- executing ------------------------------------------------------------------------------------


def test_execute_removes_exactly_the_planned_kinds(tree: Path) -> None:
    before = listing(tree)
    plan = plan_cleanup(tree, ["staging", "previous"])
    report = execute(plan)
    gone = {p for p in before if p.startswith((STAGING, PREVIOUS))}
    assert listing(tree) == before - gone
    assert report.files == plan.files and report.bytes == plan.bytes
    assert not report.errors


def test_everything_routine_spares_results_outside_and_running_run(tree: Path) -> None:
    report = execute(plan_cleanup(tree, ROUTINE_KINDS))
    assert not report.errors
    for test in ("D11/BIAS01", "D11/DARK01", "D12/BIAS01"):
        assert (tree / test / "result.json").is_file() and (tree / test / "report.md").is_file()
    assert not (tree / "D11" / "BIAS01" / "figs").exists()
    assert not (tree / "D11" / "BIAS01" / "products" / "intermediate").exists()
    assert (tree / "D11" / "DARK01" / "figs").is_symlink()  # link out: refused, left as it was
    assert (tree / "runs" / "liverun" / "run.json").is_file()
    assert not (tree / "runs" / "deadrun").exists()
    assert (tree / "D11" / ".DARK01.staging-liverun").is_dir()
    assert (tree / "logs" / "Calib_FM20190312_090000.log").is_file()  # logs only when named
    outside_intact(tree)


def test_path_swapped_for_a_link_after_planning_is_refused(tree: Path) -> None:
    plan = plan_cleanup(tree, ["figures"], sessions=["D12"])
    figs = tree / "D12" / "BIAS01" / "figs"
    (figs / "c.png").unlink()
    figs.rmdir()
    figs.symlink_to(tree.parent / "outside" / "dir", target_is_directory=True)
    report = execute(plan)
    assert report.files == 0 and "link" in report.kept[0].reason
    outside_intact(tree)


def test_results_kind_takes_whole_test_folders_only_when_named(tree: Path) -> None:
    execute(plan_cleanup(tree, ["results"], sessions=["D12"]))
    assert not (tree / "D12" / "BIAS01").exists()
    assert (tree / "D11" / "BIAS01" / "result.json").is_file()


@pytest.mark.parametrize("make_root, message", [
    (lambda tmp: tmp / "empty", "does not look like"),
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: tmp / "results" / "D11", "session folder"),
    (lambda tmp: Path("/"), "filesystem root"),
])
def test_invalid_roots_are_refused(tree: Path, tmp_path: Path, make_root, message: str) -> None:
    (tmp_path / "empty").mkdir()
    before = listing(tmp_path)
    with pytest.raises(RefusedRoot, match=message):
        plan_cleanup(make_root(tmp_path), ROUTINE_KINDS)
    assert listing(tmp_path) == before


def test_home_folder_is_refused(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tree))
    with pytest.raises(RefusedRoot, match="home"):
        plan_cleanup(tree, ["staging"])
    monkeypatch.setenv("HOME", str(tree / "D11"))
    with pytest.raises(RefusedRoot, match="home"):
        plan_cleanup(tree, ["staging"])


# -- the command ----------------------------------------------------------------------------------


def test_dry_run_lists_and_removes_nothing(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = listing(tree.parent)
    assert main(["clean", str(tree), "--keep", "products", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert STAGING.split("/")[1] in out and "intermediates" in out and "Nothing removed" in out
    assert "kept runs/liverun" in out
    assert listing(tree.parent) == before


def test_dry_run_json(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clean", str(tree), "--kind", "staging,previous", "--dry-run", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["plan"]["totals"]["staging"] == {"items": 1, "files": 1, "bytes": 400}


def test_answering_no_removes_nothing(tree: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    before = listing(tree.parent)
    monkeypatch.setattr(sys, "stdin", FakeTerminal("n\n"))
    assert main(["clean", str(tree), "--kind", "staging,previous"]) == 0
    out = capsys.readouterr().out
    assert "Remove 6 files (2.4 kB)? [y/N]" in out and "Nothing removed" in out
    assert listing(tree.parent) == before


def test_answering_yes_removes(tree: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", FakeTerminal("y\n"))
    assert main(["clean", str(tree), "--kind", "staging"]) == 0
    assert "Freed 1 file " in capsys.readouterr().out
    assert not (tree / STAGING).exists() and (tree / PREVIOUS).exists()


def test_yes_removes_without_asking(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("builtins.input", lambda *_: pytest.fail("asked a question"))
    assert main(["clean", str(tree), "--keep", "products,figures", "--yes"]) == 0
    assert not (tree / STAGING).exists() and not (tree / PREVIOUS).exists()
    assert not (tree / "D11" / "BIAS01" / "products" / "intermediate").exists()
    assert (tree / "D11" / "BIAS01" / "products" / "master_bias_CCD1.fits").is_file()
    assert (tree / "D11" / "BIAS01" / "figs" / "a.png").is_file()
    assert (tree / "runs" / "liverun").is_dir() and not (tree / "runs" / "deadrun").exists()
    outside_intact(tree)


def test_no_terminal_and_no_yes_refuses(tree: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    before = listing(tree)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # piped: not a terminal
    assert main(["clean", str(tree), "--kind", "staging"]) == 1
    assert "--yes" in capsys.readouterr().err
    assert listing(tree) == before


def test_refused_root_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clean", str(tmp_path), "--kind", "staging", "--yes"]) == 1
    assert "does not look like a vison results tree" in capsys.readouterr().err
