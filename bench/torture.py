"""A torture pass over bad input and faults (issue 16): each case runs `vison-engine` as a user
would, in a scratch folder of its own, with a time limit, and is judged on what it said and did.

    .venv/bin/python bench/torture.py [--out table.md] [--only WORD] [--keep]

Every case prints one table row: the issue item, the case, the command, exit status, seconds, what
was seen, and a verdict: `ok` (clear message, data kept, the rest done), or `TRACEBACK`, `HANG`
(over the time limit: killed), `SILENT` (the check of the outcome failed: a wrong or misleading
result) or `LOSS` (data deleted or written outside its root). The exit status of the script is the
number of cases not `ok`. Cases needing root (tmpfs mounts, dropping to `nobody` for permission
denials) say `skipped` with the reason elsewhere.

The day is a small simulated BIAS01 + DARK01 day (`simulate --small`), copied afresh per case.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LIMIT_S = 120.0  # a case longer than this is a hang (a small day's run takes a few seconds)
AS_ROOT = os.geteuid() == 0
NOBODY = 65534

# Runs the CLI in-process after dropping to `nobody` (the venv's Python may be unreadable to it, so
# the modules are imported first and, for runs, an intact copy is analysed first as a warm-up).
NOBODY_CHILD = r"""
import contextlib, io, json, os, sys
spec = json.loads(sys.argv[1])
os.environ.update(spec["env"])
from engine.cli.main import build_parser, main as cli
build_parser()  # every command's modules (the CLI imports only the one run) and what `run` imports
import engine.pipeline.launch, engine.pipeline.runner, engine.pipeline.wait  # once started
if spec["warmup"]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli(spec["warmup"])
os.setgroups([]); os.setgid(spec["uid"]); os.setuid(spec["uid"])
os.chdir(spec["home"])
sys.exit(cli(spec["argv"]))
"""


@dataclass
class Ran:
    code: int | None
    out: str
    err: str
    seconds: float
    hung: bool

    @property
    def text(self) -> str:
        return self.out + self.err

    def line(self, *needles: str) -> str:
        """The first output line holding every needle (for the table), else ''."""
        for line in self.text.splitlines():
            if all(n in line for n in needles):
                return line.strip()
        return ""


@dataclass
class Verdict:
    ok: bool
    seen: str
    loss: bool = False
    skipped: str = ""


class Scratch:
    def __init__(self, root: Path, pristine: Path):
        self.root = root
        self.pristine = pristine
        self.home = root / "home"
        self.home.mkdir()
        self._mounts: list[Path] = []
        self.env = {**os.environ, "HOME": str(self.home), "XDG_STATE_HOME": str(self.home / "state"),
                    "VISON_STATE_DIR": str(self.home / "vison"), "MPLCONFIGDIR": str(self.home / "mpl")}

    def day(self, name: str = "data") -> Path:
        copy = self.root / name / self.pristine.name
        shutil.copytree(self.pristine, copy)
        return copy

    def frame(self, day: Path, obsid: int, ccd: int) -> Path:
        return next(day.glob(f"EUC_{obsid}_*_CCD{ccd}.fits"))

    def vison(self, *args: str, cwd: Path | None = None) -> Ran:
        return self._run([PYTHON, "-m", "engine.cli", *map(str, args)], cwd)

    def _run(self, argv: list[str], cwd: Path | None = None, env: dict | None = None) -> Ran:
        started = time.monotonic()
        process = subprocess.Popen(argv, cwd=cwd or self.root, env=env or {**self.env, "PYTHONPATH": str(ROOT)},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = process.communicate(timeout=LIMIT_S)
            hung = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            out, err = process.communicate()
            hung = True
        return Ran(process.returncode, out, err, time.monotonic() - started, hung)

    def as_nobody(self, *args: str, warmup: list[str] | None = None) -> Ran | str:
        """The CLI as the unprivileged user `nobody` (root only); a str says why it cannot be."""
        if not AS_ROOT:
            return self.vison(*args)  # chmod already stops a user
        for path in (self.root, *self.root.parents):
            if path == Path("/"):
                break
            if not os.stat(path).st_mode & 0o001:
                return f"{path} cannot be reached by nobody (run with TMPDIR=/tmp)"
        os.chown(self.home, NOBODY, NOBODY)
        spec = {"env": {k: self.env[k] for k in ("HOME", "XDG_STATE_HOME", "VISON_STATE_DIR", "MPLCONFIGDIR")},
                "warmup": warmup, "uid": NOBODY, "home": str(self.home), "argv": list(map(str, args))}
        return self._run([PYTHON, "-c", NOBODY_CHILD, json.dumps(spec)])

    def mount(self, folder: Path, options: str) -> str | None:
        """A tmpfs at `folder`; None, or why not."""
        folder.mkdir(parents=True, exist_ok=True)
        if not AS_ROOT or shutil.which("mount") is None:
            return "needs root to mount a tmpfs"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode:
            return f"cannot mount a tmpfs: {done.stderr.decode().strip()}"
        self._mounts.append(folder)
        return None

    def close(self) -> None:
        for folder in self._mounts:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        self._mounts.clear()


CASES: list[tuple[str, str, Callable[[Scratch], tuple[str, Ran | None, Verdict]]]] = []


def case(item: str, name: str):
    def register(function):
        CASES.append((item, name, function))
        return function
    return register


def campaign(s: Scratch, results: str, data: Path) -> Path:
    path = s.root / "c.toml"
    path.write_text(textwrap.dedent(f"""\
        [campaign]
        block = "NOSTROMO"
        chamber = "B_NOSTROMO"
        [paths]
        data = "{data}"
        results = "{results}"
        [sessions.D11]
        tests = ["BIAS01"]
        """))
    return path


def result_json(results: Path, test: str = "BIAS01") -> dict:
    return json.loads((results / "QUICK" / test / "result.json").read_text())


def flags(results: Path, flag: str, test: str = "BIAS01") -> list[dict]:
    return [r for r in result_json(results, test)["flag_reasons"] if r["flag"] == flag]


def masters(results: Path, test: str = "BIAS01") -> int:
    return len(list((results / "QUICK" / test / "products").glob("EUC_MASTER*_CCD*.fits")))


def flip(path: Path, at: int = 5000) -> None:
    info = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(at)
        byte = handle.read(1)
        handle.seek(at)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


# -- data loss and writes outside their root -----------------------------------------------------

@case("1", "scripts --force with output = \"~\"")
def scripts_home(s):
    (s.home / "thesis.tex").write_text("years of work")
    example = ROOT / "configs" / "examples" / "nostromo" / "scripts.toml"
    toml = s.root / "in" / "scripts.toml"
    toml.parent.mkdir()
    toml.write_text(example.read_text().replace('output = "Scripts_NOSTROMO_APR19_W18"', 'output = "~"'))
    ran = s.vison("scripts", toml, "--force")
    kept = [p.name for p in s.home.iterdir()] == ["thesis.tex"]
    return "scripts in/scripts.toml --force", ran, Verdict(ran.code == 1 and kept, ran.line("error") + "; home kept" * kept,
                                                           loss=not kept)


@case("2", "a tag that is a path")
def tag_path(s):
    day = s.day()
    ran = s.vison("run", "--data", day, "--tests", "BIAS01", "--results", s.root / "r", "-t", "/../../x")
    written = [p for p in s.root.rglob("*") if p.suffix == ".log" or p.name == "x"]
    return 'run ... -t "/../../x"', ran, Verdict(ran.code == 2 and not written and "not a path" in ran.err,
                                                 ran.line("error")[:150], loss=bool(written))


@case("4", "a campaign TOML as the monitor's state")
def state_toml(s):
    day = s.day()
    toml = campaign(s, "r", day.parent)
    before = toml.read_bytes()
    ran = s.vison("monitor", day, "--once", "--state", toml)
    kept = toml.read_bytes() == before and not toml.with_name("c.toml.lock").exists()
    return "monitor DAY --once --state c.toml", ran, Verdict(ran.code == 2 and kept, ran.line("error"), loss=not kept)


@case("4", "backup into its own data folder")
def backup_self(s):
    day = s.day()
    ran = s.vison("monitor", day, "--once", "--backup", day.parent)
    return "monitor DAY --once --backup data", ran, Verdict(ran.code == 2 and "outside the data" in ran.err,
                                                            ran.line("error")[:140])


@case("5", "results = \"/\" in a campaign")
def results_root(s):
    day = s.day()
    toml = campaign(s, "/", day.parent)
    ran = s.vison("run", toml, "--session", "D11", "--dry")
    return "run c.toml --dry", ran, Verdict(ran.code == 2 and "filesystem root" in ran.err, ran.line("paths.results"))


# -- hangs and crashes ---------------------------------------------------------------------------

def negative_naxis(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(b"NAXIS1  =", 2880)
    data[at:at + 30] = b"NAXIS1  =                -4238"
    path.write_bytes(bytes(data))


@case("6", "negative NAXIS1: monitor")
def naxis_monitor(s):
    day = s.day()
    bad = s.frame(day, 1002, 1)
    negative_naxis(bad)
    ran = s.vison("monitor", day, "--once", "--state", s.root / "st.json")
    said = ran.line(bad.name, "not a valid frame")
    return "monitor DAY --once", ran, Verdict(bool(said) and ran.code == 1, said[30:170])


@case("6", "negative NAXIS1: aim run")
def naxis_run(s):
    day = s.day()
    bad = s.frame(day, 1002, 1)
    negative_naxis(bad)
    results = s.root / "r"
    ran = s.vison("run", "--data", day, "--tests", "BIAS01", "--results", results)
    named = [r for r in flags(results, "MISSDATA") if bad.name in r["reason"]] if ran.code == 0 else []
    return "run --data DAY --tests BIAS01", ran, Verdict(bool(named) and masters(results) == 3,
                                                         f"MISSDATA: {named[0]['reason'][:100]}" if named else "")


@case("7", "monitor --log is a folder")
def log_folder(s):
    day = s.day()
    ran = s.vison("monitor", day, "--once", "--log", s.root, "--state", s.root / "st.json")
    return "monitor DAY --once --log DIR", ran, Verdict(ran.code == 2, ran.line("error"))


@case("7", "monitor log on a full disk")
def log_full(s):
    day = s.day()
    (s.root / "bk").mkdir()
    ran = s.vison("monitor", day, "--once", "--log", "/dev/full", "--backup", s.root / "bk", "--state", s.root / "st.json")
    copied = len(list((s.root / "bk" / day.name).iterdir())) == len(list(day.iterdir()))
    said = ran.line("alert by log /dev/full failed")
    return "monitor DAY --once --log /dev/full --backup bk", ran, Verdict(bool(said) and copied and ran.code == 1,
                                                                          said[30:] + "; all copied" * copied)


@case("8", "results disk full (400 kB tmpfs)")
def results_full(s):
    why = s.mount(s.root / "mnt", "size=400k")
    if why:
        return "run ... --results mnt/r", None, Verdict(True, "", skipped=why)
    day = s.day()
    ran = s.vison("run", "--data", day, "--tests", "BIAS01", "--results", s.root / "mnt" / "r")
    said = ran.line("error: the results disk is full")
    return "run --data DAY --tests BIAS01 --results mnt/r", ran, Verdict(ran.code == 1 and bool(said), said[:140])


@case("9", "TOML nested 5000 deep")
def nested(s):
    toml = s.root / "nest.toml"
    toml.write_text('[campaign]\nblock = ' + "[" * 5000 + "]" * 5000 + "\n")
    ran = s.vison("validate", toml)
    return "validate nest.toml", ran, Verdict(ran.code != 0 and "nested more than" in ran.text,
                                              ran.line("nested")[:120])


@case("9", "EXP_LOG is a folder")
def explog_folder(s):
    day = s.day()
    explog = next(day.glob("EXP_LOG_*"))
    explog.unlink()
    explog.mkdir()
    ran = s.vison("run", "--data", day, "--tests", "BIAS01", "--results", s.root / "r")
    said = ran.line("error: EXP_LOG")
    return "run --data DAY ...", ran, Verdict(ran.code == 1 and bool(said), said[:140])


@case("9", "results root read-only (as nobody)")
def results_ro(s):
    day = s.day()
    (s.root / "ro").mkdir()
    ran = s.as_nobody("run", "--data", day, "--tests", "BIAS01", "--results", s.root / "ro", "-m", "1")
    if isinstance(ran, str):
        return "run ... --results ro (as nobody)", None, Verdict(True, "", skipped=ran)
    return "run ... --results ro (as nobody)", ran, Verdict(ran.code == 2 and "cannot be written" in ran.err,
                                                            ran.line("error"))


# -- one bad file costs one frame ----------------------------------------------------------------

def _one_bad_frame(s, spoil: Callable[[Path], None], flag: str, ccd: int = 2):
    day = s.day()
    bad = s.frame(day, 1003, ccd)
    spoil(bad)
    results = s.root / "r"
    ran = s.vison("run", "--data", day, "--tests", "BIAS01", "--results", results)
    named = [r for r in flags(results, flag) if bad.name in r["reason"]] if ran.code == 0 else []
    ok = bool(named) and masters(results) == 3 and not result_json(results)["errors"]
    return "run --data DAY --tests BIAS01", ran, Verdict(ok, f"{flag}: {named[0]['reason'][:90]}; 3 masters"
                                                         if named else "")


def _write(shape=None, value=1000):
    def spoil(path: Path) -> None:
        import numpy as np
        from engine.formats.fits import read_frame, write_frame
        if shape is None:
            with read_frame(path) as frame:
                size = frame.shape
        write_frame(path, np.full(shape or size, value, np.uint16), overwrite=True)
    return spoil


@case("10", "one CCD2 frame 50x60")
def frame_small(s):
    return _one_bad_frame(s, _write((50, 60)), "MISSDATA")


@case("10", "one CCD2 frame all 65535")
def frame_saturated(s):
    return _one_bad_frame(s, _write(value=65535), "POORQUALDATA")


@case("10", "one CCD2 frame all 0")
def frame_zero(s):
    return _one_bad_frame(s, _write(value=0), "POORQUALDATA")


def _one_bad_hk(s, spoil: Callable[[Path], None], needle: str):
    day = s.day()
    hk = next(day.glob("HK_1004_*"))
    spoil(hk)
    results = s.root / "r"
    ran = s.vison("run", "--data", day, "--tests", "BIAS01", "--results", results)
    named = [r for r in flags(results, "MISSDATA") if hk.name in r["reason"] and needle in r["reason"]] \
        if ran.code == 0 else []
    return "run --data DAY --tests BIAS01", ran, Verdict(bool(named) and masters(results) == 3,
                                                         f"MISSDATA: {named[0]['reason'][:100]}" if named else "")


@case("10", "HK path is a folder")
def hk_folder(s):
    def spoil(path):
        path.unlink()
        path.mkdir()
    return _one_bad_hk(s, spoil, "cannot be read")


@case("12", "HK file binary")
def hk_binary(s):
    return _one_bad_hk(s, lambda p: p.write_bytes(bytes(range(256)) * 8), "holds no HK table")


@case("11", "EXP_LOG with a UTF-8 BOM")
def explog_bom(s):
    day = s.day()
    explog = next(day.glob("EXP_LOG_*"))
    explog.write_bytes(b"\xef\xbb\xbf" + explog.read_bytes())
    results = s.root / "r"
    ran = s.vison("run", "--data", day, "--tests", "BIAS01", "--results", results)
    ok = ran.code == 0 and masters(results) == 3 and "is empty" not in ran.text
    return "run --data DAY --tests BIAS01", ran, Verdict(ok, "read as without the BOM; 3 masters" if ok else "")


@case("11", "EXP_LOG with a duplicate OBSID/CCD row")
def explog_duplicate(s):
    day = s.day()
    explog = next(day.glob("EXP_LOG_*"))
    lines = explog.read_text().splitlines(keepends=True)
    explog.write_text("".join(lines[:5] + [lines[3].replace("\t0\t", "\t7\t", 1)] + lines[5:]))
    results = s.root / "r"
    ran = s.vison("run", "--data", day, "--tests", "BIAS01", "--results", results)
    log = "".join(p.read_text() for p in (results / "logs").glob("*.log")) if results.exists() else ""
    said = next((line for line in (ran.text + log).splitlines() if "already logged" in line), "")
    ok = bool(said) and ran.code == 0 and masters(results) == 3
    return "run --data DAY --tests BIAS01", ran, Verdict(ok, "in the run log: " + said.strip()[-110:])


# -- the backup must be what it says ---------------------------------------------------------------

def _backed_up(s):
    day = s.day()
    (s.root / "bk").mkdir()
    args = ("monitor", day, "--once", "--backup", s.root / "bk", "--state", s.root / "st.json", "--settle", "0")
    first = s.vison(*args)
    assert first.code == 0, first.text[-2000:]
    return day, args


@case("13", "backup copy changed (same size and mtime)")
def copy_changed(s):
    day, args = _backed_up(s)
    name = s.frame(day, 1001, 1).name
    flip(s.root / "bk" / day.name / name)
    ran, again = s.vison(*args), s.vison(*args)
    said = ran.line("backup copy changed")
    return "monitor --once, twice", ran, Verdict(bool(said) and ran.code == 1 and again.code == 1,
                                                 said[30:150] + "...; exit 1 again")


@case("13", "source changed after copying (same size and mtime)")
def source_changed(s):
    day, args = _backed_up(s)
    source = s.frame(day, 1001, 1)
    before = (s.root / "bk" / day.name / source.name).read_bytes()
    flip(source)
    ran = s.vison(*args)
    kept = (s.root / "bk" / day.name / source.name).read_bytes() == before
    said = ran.line("source changed after it was copied")
    return "monitor --once", ran, Verdict(bool(said) and ran.code == 1 and kept, said[30:150] + "...", loss=not kept)


@case("13", "copy changed keeping size, times and the ledger's signature (bit rot)")
def copy_rot(s):
    sys.path.insert(0, str(ROOT))
    from engine.monitor.backup import file_signature
    day, args = _backed_up(s)
    name = s.frame(day, 1001, 1).name
    copy = s.root / "bk" / day.name / name
    flip(copy)
    state = json.loads((s.root / "st.json").read_text())
    state["backup"][str(s.root / "bk")][name]["copy_sig"] = file_signature(copy)
    (s.root / "st.json").write_text(json.dumps(state))
    once = s.vison(*args)
    ran = s.vison(*args[:2], "--verify-backup", *args[3:])
    said = ran.line("hashed again")
    ok = once.code == 0 and ran.code == 1 and bool(said)
    return "monitor --once, then --verify-backup", ran, Verdict(ok, f"--once: exit {once.code} (not due); "
                                                                f"--verify-backup: {said[30:130]}...")


@case("13", "backup target read-only (as nobody)")
def backup_ro(s):
    day = s.day()
    (s.root / "bk").mkdir()
    ran = s.as_nobody("monitor", day, "--once", "--backup", s.root / "bk", "--settle", "0")
    if isinstance(ran, str):
        return "monitor DAY --once --backup bk (as nobody)", None, Verdict(True, "", skipped=ran)
    said = ran.line("cannot back up to")
    return "monitor DAY --once --backup bk (as nobody)", ran, Verdict(ran.code == 1 and bool(said), said[30:170])


@case("13", "backup disk full (300 kB tmpfs)")
def backup_full(s):
    why = s.mount(s.root / "mnt", "size=300k")
    if why:
        return "monitor ... --backup mnt", None, Verdict(True, "", skipped=why)
    day = s.day()
    ran = s.vison("monitor", day, "--once", "--backup", s.root / "mnt", "--state", s.root / "st.json", "--settle", "0")
    said = ran.line("cannot back up to")
    once = sum("could not copy" in line or "cannot back up" in line for line in ran.out.splitlines()) == 1
    copies = list((s.root / "mnt" / day.name).iterdir())
    whole = all(c.read_bytes() == (day / c.name).read_bytes() for c in copies)
    return "monitor DAY --once --backup mnt", ran, Verdict(ran.code == 1 and once and whole,
                                                           f"{said[30:150]}...; {len(copies)} whole copies")


# -- new cases: frames of the wrong shape, permission denials ---------------------------------------

@case("new", "a truncated (50x60) frame reaching the monitor")
def monitor_shape(s):
    day = s.day()
    bad = s.frame(day, 1004, 2)
    _write((50, 60))(bad)
    (s.root / "bk").mkdir()
    ran = s.vison("monitor", day, "--once", "--backup", s.root / "bk", "--state", s.root / "st.json", "--settle", "0")
    said = ran.line(bad.name, "image shape")
    copied = (s.root / "bk" / day.name / bad.name).read_bytes() == bad.read_bytes()
    return "monitor DAY --once --backup bk", ran, Verdict(ran.code == 1 and bool(said) and copied,
                                                          said[30:150] + "...; backed up")


@case("new", "a frame of another geometry reaching the monitor")
def monitor_geometry(s):
    from engine.formats.geometry import MEDIUM
    day = s.day()
    bad = s.frame(day, 1006, 3)
    _write(MEDIUM.shape)(bad)
    ran = s.vison("monitor", day, "--once", "--state", s.root / "st.json", "--settle", "0")
    said = ran.line(bad.name, "image shape")
    return "monitor DAY --once", ran, Verdict(ran.code == 1 and "medium geometry" in said, said[30:150] + "...")


@case("new", "an unreadable frame (as nobody): monitor")
def monitor_denied(s):
    day = s.day()
    bad = s.frame(day, 1003, 2)
    bad.chmod(0)
    (s.root / "bk").mkdir()
    if AS_ROOT:
        os.chown(s.root / "bk", NOBODY, NOBODY)
    ran = s.as_nobody("monitor", day, "--once", "--backup", s.root / "bk", "--settle", "0")
    if isinstance(ran, str):
        return "monitor (as nobody)", None, Verdict(True, "", skipped=ran)
    said = ran.line(bad.name, "cannot be read")
    rest = len(list((s.root / "bk" / day.name).iterdir())) == len(list(day.iterdir())) - 1
    return "monitor DAY --once --backup bk (as nobody)", ran, Verdict(ran.code == 1 and bool(said) and rest,
                                                                      said[30:140] + "; the rest copied")


@case("new", "an unreadable frame (as nobody): aim run")
def run_denied(s):
    day = s.day()
    intact = s.day("intact")
    bad = s.frame(day, 1003, 2)
    bad.chmod(0)
    results = s.root / "r"
    results.mkdir()
    if AS_ROOT:
        os.chown(results, NOBODY, NOBODY)
    ran = s.as_nobody("run", "--data", day, "--tests", "BIAS01", "--results", results, "-m", "1",
                      warmup=["run", "--data", str(intact), "--tests", "BIAS01", "--results", str(s.root / "w"), "-m", "1"])
    if isinstance(ran, str):
        return "run (as nobody)", None, Verdict(True, "", skipped=ran)
    named = [r for r in flags(results, "MISSDATA") if bad.name in r["reason"]] if ran.code == 0 else []
    return "run --data DAY --tests BIAS01 (as nobody)", ran, Verdict(bool(named) and masters(results) == 3,
                                                                     f"MISSDATA: {named[0]['reason'][:90]}; 3 masters"
                                                                     if named else "")


@case("new", "an unreadable HK file (as nobody): monitor")
def monitor_hk_denied(s):
    day = s.day()
    hk = next(day.glob("HK_1004_*"))
    hk.chmod(0)
    ran = s.as_nobody("monitor", day, "--once", "--settle", "0")
    if isinstance(ran, str):
        return "monitor (as nobody)", None, Verdict(True, "", skipped=ran)
    said = ran.line("cannot read", hk.name)
    return "monitor DAY --once (as nobody)", ran, Verdict(ran.code == 1 and bool(said), said[30:])


@case("15", "three runs at once on one results root")
def three_runs(s):
    day = s.day()
    results = s.root / "r"
    argv = [PYTHON, "-m", "engine.cli", "run", "--data", str(day), "--tests", "BIAS01", "--results", str(results)]
    outcomes: list[Ran] = [None] * 3  # type: ignore[list-item]

    def one(i):
        outcomes[i] = s._run(argv)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = len(list((results / "QUICK").glob("BIAS01*")))
    logs = len(list((results / "logs").glob("*.log")))
    ok = all(r.code == 0 for r in outcomes) and kept == 3 and logs == 3
    worst = max(outcomes, key=lambda r: (r.hung, "Traceback" in r.text, r.code or 0))
    return "run ... three times at once", worst, Verdict(ok, f"exits {[r.code for r in outcomes]}; {kept} results "
                                                         f"kept (1 + 2 previous), {logs} logs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    parser.add_argument("--only", help="only the cases whose name holds this word")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    base = Path(tempfile.mkdtemp(prefix="vison-torture-", dir="/tmp"))
    base.chmod(0o755)  # nobody must reach the scratch folders
    sim = base / "sim"
    done = subprocess.run([PYTHON, "-m", "engine.cli", "simulate", "--tests", "BIAS01,DARK01", "--out", str(sim),
                           "--small"], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        print(done.stderr, file=sys.stderr)
        return 1
    pristine = next(p for p in sim.iterdir() if p.is_dir())
    subprocess.run(["chmod", "-R", "a+rX", str(sim)], check=True)
    rows = ["| # | case | command | exit | s | outcome | verdict |", "|---|---|---|---|---|---|---|"]
    bad = 0
    for number, (item, name, function) in enumerate(CASES, 1):
        if args.only and args.only.lower() not in name.lower():
            continue
        folder = base / f"case{number:02d}"
        folder.mkdir()
        folder.chmod(0o755)
        scratch = Scratch(folder, pristine)
        try:
            command, ran, verdict = function(scratch)
        except Exception as exc:  # a check that could not even look: the outcome is not what it should be
            command, ran, verdict = "", None, Verdict(False, f"check failed: {type(exc).__name__}: {exc}")
        finally:
            scratch.close()
        if verdict.skipped:
            label, exit_code, seconds = f"skipped: {verdict.skipped}", "", ""
        else:
            exit_code = "" if ran is None else str(ran.code)
            seconds = "" if ran is None else f"{ran.seconds:.1f}"
            if ran is not None and ran.hung:
                label = "HANG"
            elif ran is not None and "Traceback" in ran.text:
                label = "TRACEBACK"
            elif verdict.loss:
                label = "LOSS"
            else:
                label = "ok" if verdict.ok else "SILENT"
        bad += label not in ("ok",) and not label.startswith("skipped")
        seen = verdict.seen.replace(str(base), "…").replace("|", "/").replace("\n", " ").strip()
        rows.append(f"| {item} | {name} | `{command}` | {exit_code} | {seconds} | {seen} | {label} |")
        print(rows[-1], flush=True)
    total = len(rows) - 2
    summary = f"\n{total} cases, {bad} not ok"
    print(summary)
    if args.out:
        Path(args.out).write_text("\n".join(rows) + summary + "\n")
    if not args.keep:
        subprocess.run(["chmod", "-R", "u+rwX", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"scratch folders kept in {base}")
    return bad


if __name__ == "__main__":
    sys.exit(main())
