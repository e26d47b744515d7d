"""Permission denials, tried as a user without privileges (issue 16).

chmod 000 does not stop root, so as root each case runs in a child process that drops to the
unprivileged user `nobody` (os.setgid/os.setuid) after importing what it needs: the Python of this
venv may live where `nobody` cannot read (/root), so the modules an analysis loads lazily are
loaded first, by the same command run on an intact copy of the data. Not root, the child runs as
you, whom chmod already stops. The data live in a folder of their own under /tmp that `nobody`
can reach (pytest's tmp_path is private to root).
"""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sim_days import bias_dark_day

REPO = Path(__file__).resolve().parents[1]
AS_ROOT = os.geteuid() == 0
try:
    NOBODY = pwd.getpwnam("nobody")
    UID, GID = NOBODY.pw_uid, NOBODY.pw_gid
except KeyError:
    UID = GID = 65534

# The child: set up as root (imports, warm-up), then drop privileges and run the case. It prints one
# JSON line, {"code": exit status, ...}, after whatever the command printed.
CHILD = r"""
import contextlib, io, json, os, sys
spec = json.loads(sys.argv[1])
os.environ.update(spec["env"])
sys.path.insert(0, spec["tests"])
from engine.cli.main import build_parser, main as cli
build_parser()  # every command's modules loaded while this Python's own files (root's) can be read
if spec["warmup"]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli(spec["warmup"])
if spec["drop"]:
    try:
        os.setgroups([])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
    except OSError as exc:
        print(json.dumps({"skip": f"cannot drop privileges here: {exc}"}))
        sys.exit(0)
    with contextlib.suppress(PermissionError):
        open(spec["probe"]).close()
        print(json.dumps({"skip": "an unprivileged user can still read a chmod 000 file here"}))
        sys.exit(0)
os.chdir(spec["home"])
result = {}
exec(spec["code"])
sys.stdout.flush()
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return bias_dark_day(tmp_path_factory.mktemp("data"))


@pytest.fixture
def world(pristine):
    """A folder `nobody` can reach, holding a copy of the day (data/<day>), an intact copy for the
    warm-up, and a home of nobody's own (state files, matplotlib's cache)."""
    root = Path(tempfile.mkdtemp(prefix="vison-perm-", dir="/tmp"))
    root.chmod(0o755)
    shutil.copytree(pristine, root / "data" / pristine.name)
    shutil.copytree(pristine, root / "intact" / pristine.name)
    for folder in ("home", "probe"):
        (root / folder).mkdir()
    probe = root / "probe" / "secret"
    probe.write_text("x")
    probe.chmod(0)
    _give(root / "home")
    subprocess.run(["chmod", "-R", "a+rX", str(root / "data"), str(root / "intact")], check=True)
    yield root
    subprocess.run(["chmod", "-R", "u+rwX", str(root)], check=False)
    shutil.rmtree(root, ignore_errors=True)


def _give(path: Path) -> None:
    """Make `path` the unprivileged user's (nothing to do when we are that user already)."""
    if AS_ROOT:
        os.chown(path, UID, GID)


def _as_user(world: Path, code: str, warmup: list[str] | None = None) -> tuple[dict, str, str]:
    """Run `code` (with `cli` and `spec` at hand; it fills `result`) as an unprivileged user."""
    home = world / "home"
    spec = {"env": {"HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "MPLCONFIGDIR": str(home / "mpl"),
                    "VISON_STATE_DIR": str(home / "vison")},
            "tests": str(REPO / "tests"), "warmup": warmup, "drop": AS_ROOT, "uid": UID, "gid": GID,
            "probe": str(world / "probe" / "secret"), "home": str(home), "code": code, "world": str(world)}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    result = json.loads(lines[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    assert done.returncode == 0, done.stderr[-3000:]
    return result, "\n".join(lines[:-1]), done.stderr


def _cli(args: list[str]) -> str:
    return f"result['code'] = cli({args!r})\n"


def _day(world: Path) -> Path:
    return next((world / "data").iterdir())


def _deny(path: Path) -> Path:
    path.chmod(0)
    return path


def _run_args(world: Path, day: Path, results: str) -> list[str]:
    return ["run", "--data", str(day), "--tests", "BIAS01", "--results", str(world / results), "-m", "1"]


def _warmup(world: Path) -> list[str]:
    """The same run on the intact copy, as root: every module the analysis loads lazily is loaded."""
    return _run_args(world, next((world / "intact").iterdir()), "warm")


# -- the monitor ------------------------------------------------------------------------------------

def test_monitor_names_an_unreadable_frame_and_backs_up_the_rest(world):
    day = _day(world)
    denied = _deny(next(day.glob("EUC_1003_*_CCD2.fits")))
    backup = world / "backup"
    backup.mkdir()
    _give(backup)
    args = ["monitor", str(day), "--once", "--backup", str(backup), "--settle", "0"]
    result, out, err = _as_user(world, _cli(args))
    assert result["code"] == 1 and "Traceback" not in out + err
    assert f"WARNING   {denied.name} cannot be read (Permission denied): not checked nor backed up" in out
    others = len(list(day.iterdir())) - 1
    assert f"{others} copied, 1 pending, 0 failed" in out
    copies = {p.name for p in (backup / day.name).iterdir()}
    assert len(copies) == others and denied.name not in copies


def test_a_running_monitor_takes_a_frame_once_it_can_be_read(world):
    day = _day(world)
    denied = _deny(next(day.glob("EUC_1005_*_CCD1.fits")))
    _give(denied)  # the user's own file: they can grant themselves the read, as an operator would
    code = f"""
from engine.monitor import FrameArrived, Monitor, MonitorNotice, MonitorSettings
events = []
monitor = Monitor({str(day)!r}, MonitorSettings(settle_seconds=0), state_path="state.json")
monitor.subscribe(events.append)
monitor.open()
monitor.scan()
result["denied"] = [e.text for e in events if isinstance(e, MonitorNotice) and e.level == "warning"]
os.chmod({str(denied)!r}, 0o644)
monitor.scan()
result["arrived"] = [e.name for e in events if isinstance(e, FrameArrived) and e.name == {denied.name!r}]
monitor.close("test")
"""
    result, _, _ = _as_user(world, code)
    assert len(result["denied"]) == 1 and denied.name in result["denied"][0]
    assert result["arrived"] == [denied.name]  # not left "incomplete" for ever


def test_monitor_names_an_unreadable_hk_file_and_goes_on(world):
    day = _day(world)
    denied = _deny(next(day.glob("HK_1004_*.txt")))
    backup = world / "backup"
    backup.mkdir()
    _give(backup)
    args = ["monitor", str(day), "--once", "--backup", str(backup), "--settle", "0"]
    result, out, err = _as_user(world, _cli(args))
    assert result["code"] == 1 and "Traceback" not in out + err
    assert f"WARNING   cannot read {denied.name}: Permission denied" in out
    assert len(list((backup / day.name).iterdir())) == len(list(day.iterdir())) - 1


def test_a_read_only_backup_target_is_one_line_and_the_monitor_goes_on(world):
    day = _day(world)
    backup = world / "backup"
    backup.mkdir()  # root's, 755: nobody cannot write in it
    if not AS_ROOT:
        backup.chmod(0o555)
    args = ["monitor", str(day), "--once", "--backup", str(backup), "--settle", "0"]
    result, out, err = _as_user(world, _cli(args))
    assert result["code"] == 1 and "Traceback" not in out + err
    assert f"WARNING   cannot back up to {backup}: cannot write in {backup / day.name} (Permission denied)" in out
    assert "OBSID 1013 DARK01 logged" in out  # watching went on
    assert f"backup {backup}: 1 failed" in err
    assert not list(backup.iterdir())


# -- an analysis ------------------------------------------------------------------------------------

def _result(world: Path, results: str) -> dict:
    return json.loads((world / results / "QUICK" / "BIAS01" / "result.json").read_text())


def test_an_aim_run_names_an_unreadable_frame_and_analyses_the_rest(world):
    day = _day(world)
    denied = _deny(next(day.glob("EUC_1003_*_CCD2.fits")))
    (world / "r").mkdir()
    _give(world / "r")
    result, out, err = _as_user(world, _cli(_run_args(world, day, "r")), warmup=_warmup(world))
    assert result["code"] == 0 and "Traceback" not in out + err, out + err
    record = _result(world, "r")
    [missing] = [r for r in record["flag_reasons"] if r["flag"] == "MISSDATA"]
    assert denied.name in missing["reason"] and "Permission denied" in missing["reason"]
    assert (missing["ccd"], missing["obsid"]) == (2, 1003)
    assert record["errors"] is False and "SUBTASKCRASH" not in record["flags"]
    masters = sorted((world / "r" / "QUICK" / "BIAS01" / "products").glob("EUC_MASTER*_CCD*.fits"))
    assert len(masters) == 3


def test_an_aim_run_names_an_unreadable_hk_file(world):
    day = _day(world)
    denied = _deny(next(day.glob("HK_1006_*.txt")))
    (world / "r").mkdir()
    _give(world / "r")
    result, out, err = _as_user(world, _cli(_run_args(world, day, "r")), warmup=_warmup(world))
    assert result["code"] == 0 and "Traceback" not in out + err, out + err
    record = _result(world, "r")
    [missing] = [r for r in record["flag_reasons"] if r["flag"] == "MISSDATA"]
    assert denied.name in missing["reason"] and "Permission denied" in missing["reason"]
    assert missing["obsid"] == 1006 and record["errors"] is False


def test_a_read_only_results_root_is_one_line(world):
    day = _day(world)
    results = world / "ro"
    results.mkdir()  # root's, 755: nobody cannot write in it
    if not AS_ROOT:
        results.chmod(0o555)
    result, out, err = _as_user(world, _cli(_run_args(world, day, "ro")))
    assert result["code"] == 2 and "Traceback" not in out + err
    assert err.startswith(f"error: results folder {results} cannot be written")
    assert not list(results.iterdir())
