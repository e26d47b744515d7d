"""Start-up, screen switch and quit times of the `vison` app, in a real pseudo-terminal.

    python bench/bench_app_startup.py [--runs 3] [--size 120x40] [--simulate] [--keep DIR] [--source DIR]

Makes the demo campaign in a temporary folder (with its simulated day folder if --simulate), then,
`--runs` times, starts `vison CAMPAIGN` in a pty of the given size and times, from the output it
writes (escape sequences stripped):

- first paint: from the process start to the first frame (the app bar and the footer drawn);
- screen switch: each screen key 2..7, then 1, pressed once the previous screen is drawn, until
  the new screen's own footer keys are drawn; first visits, then a second round (screens kept);
- quit: from ctrl+q to the process's exit.

It also lists which heavy modules (astropy, scipy, openpyxl, matplotlib, engine.tasks.registry)
were imported, or being imported by a thread, when the first frame was written (a child hook
around Textual's App._display, once the footer's keys are in the frame).
Figures go to docs/performance.md; the machine is printed with them. `--source DIR` runs the app
from another checkout's vison_tui/ and engine/ (e.g. `git archive` of an older commit), to compare
before and after under the same load: other sessions share this machine.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import select
import signal
import statistics
import struct
import sys
import tempfile
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from machine import cpu_model  # noqa: E402

HEAVY = ("astropy", "scipy", "openpyxl", "matplotlib", "engine.tasks.registry")
# (key, screen, text only that screen's footer or body draws)
SWITCHES = (("2", "Scripts", "Write scripts"), ("3", "Runs", "New run"), ("4", "Log", "Search"),
            ("5", "Results", "Quick look"), ("6", "Monitor", "Start/stop"), ("7", "Clean-up", "Remove"),
            ("1", "Campaign", "Next error"))
FIRST_PAINT = (" vison ", "Next error")  # the app bar and the Campaign screen's footer
ESCAPES = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|P[^\x1b]*\x1b\\|[@-Z\\-_])")

# The child: the app, plus a hook saying which heavy modules were loaded when the first frame was out.
CHILD = r"""
import json, os, sys
source = os.environ.get("BENCH_SOURCE")
if source:  # another checkout first, past the editable install's import hook
    sys.path.insert(0, source)
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                        and "editable" not in getattr(f, "__name__", "").lower()]
from vison_tui.app import VisonApp, main
assert not source or VisonApp.__module__ and sys.modules["vison_tui"].__file__.startswith(source)

report = os.environ["BENCH_MODULES_OUT"]
heavy = json.loads(os.environ["BENCH_HEAVY"])
written = []

def write_modules():
    loaded = [name for name in heavy if name in sys.modules]  # an import under way in a thread counts
    with open(report, "w") as out:
        json.dump(loaded, out)

display = VisonApp._display

def _display(self, screen, renderable):  # the first paint written to the terminal: what is loaded then
    display(self, screen, renderable)
    if renderable is not None and not written and screen.query("FooterKey"):  # as FIRST_PAINT below
        written.append(True)
        write_modules()

VisonApp._display = _display
sys.exit(main(sys.argv[1:]))
"""


class Terminal:
    """A child process in a pseudo-terminal, its output read as plain text."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, columns: int, rows: int) -> None:
        self.started = time.monotonic()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.text = ""
        self.exit_status: int | None = None

    def read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 1 << 16)
        except OSError:
            return False
        if not data:
            return False
        self.text += ESCAPES.sub(b" ", data).decode("utf-8", "replace")
        return True

    def wait_for_text(self, needles: tuple[str, ...], since: int, timeout: float = 60.0) -> float:
        """Seconds until every needle appeared in the output after position `since`."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if all(needle in self.text[since:] for needle in needles):
                return time.monotonic()
            self.read(0.01)
        raise TimeoutError(f"{needles} not drawn within {timeout:.0f} s; last output: {self.text[-400:]!r}")

    def cpu_seconds(self) -> float:
        """CPU time the app has used so far (all its threads): unlike wall time, hardly changed by
        other processes sharing the machine."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def send(self, keys: bytes) -> int:
        mark = len(self.text)
        os.write(self.fd, keys)
        return mark

    def wait_exit(self, timeout: float = 30.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            self.read(0.01)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_status = status
                return time.monotonic()
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise TimeoutError(f"the app did not quit within {timeout:.0f} s")

    def settle(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.read(0.01)


def prepare(folder: Path, simulate: bool) -> Path:
    from engine.sim.demo import demo_request, prepare_demo_folder, simulate_demo
    from engine.tasks.registry import load_campaign_checked

    config = prepare_demo_folder(folder / "demo")
    if simulate:
        simulate_demo(demo_request(load_campaign_checked(config)))
    return config


def one_run(config: Path, columns: int, rows: int, work: Path, source: str | None = None) -> dict:
    modules_out = work / "modules.json"
    modules_out.unlink(missing_ok=True)
    env = {**os.environ, "TERM": os.environ.get("BENCH_TERM", "xterm-256color"), "COLUMNS": str(columns),
           "LINES": str(rows), "BENCH_MODULES_OUT": str(modules_out), "BENCH_HEAVY": json.dumps(HEAVY),
           "VISON_STATE_DIR": str(work / "state")}
    env.pop("TEXTUAL", None)
    if source:
        env["BENCH_SOURCE"] = str(Path(source).resolve())
    terminal = Terminal([sys.executable, "-c", CHILD, str(config)], env, config.parent.parent, columns, rows)
    figures: dict = {}
    try:
        painted = terminal.wait_for_text(FIRST_PAINT, 0)
        figures["first_paint"] = painted - terminal.started
        figures["cpu:first_paint"] = terminal.cpu_seconds()
        terminal.settle(3.0)  # let the start-up work (validation) end, as a user reads the screen
        # leave the editor if it has the focus (escape, then wait past the escape delay)
        terminal.send(b"\x1b")
        terminal.settle(0.5)
        for round_name in ("first", "again"):
            for key, screen, marker in SWITCHES:
                cpu = terminal.cpu_seconds()
                mark = terminal.send(key.encode())
                sent = time.monotonic()
                figures[f"{round_name}:{screen}"] = terminal.wait_for_text((marker,), mark) - sent
                figures[f"cpu:{round_name}:{screen}"] = terminal.cpu_seconds() - cpu
                terminal.settle(0.3)
        mark = terminal.send(b"\x11")  # ctrl+q
        sent = time.monotonic()
        figures["quit"] = terminal.wait_exit() - sent
    finally:
        if terminal.exit_status is None:
            try:
                os.kill(terminal.pid, signal.SIGKILL)
                os.waitpid(terminal.pid, 0)
            except OSError:
                pass
    try:
        figures["heavy_at_first_paint"] = json.loads(modules_out.read_text())
    except (OSError, ValueError):
        figures["heavy_at_first_paint"] = ["?"]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="120x40", help="COLUMNSxROWS (default 120x40)")
    parser.add_argument("--simulate", action="store_true", help="simulate the demo's day folder first")
    parser.add_argument("--keep", help="make the demo campaign in this folder (kept) instead of a temporary one")
    parser.add_argument("--json", action="store_true", help="print every run's figures as JSON")
    parser.add_argument("--source", help="run the app from this folder's vison_tui/ and engine/ (another checkout)")
    args = parser.parse_args()
    columns, rows = (int(n) for n in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="vison-bench-app-") as temporary:
        work = Path(args.keep) if args.keep else Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        config = prepare(work, args.simulate)
        runs = [one_run(config, columns, rows, work, args.source) for _ in range(args.runs)]

    if args.json:
        print(json.dumps(runs, indent=1))
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; terminal {columns}x{rows}; {args.runs} runs; "
          f"Python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f}; "
          f"source {args.source or REPO}")

    def show(name: str, key: str) -> None:
        values = [run[key] for run in runs]
        cpu = [run[f"cpu:{key}"] for run in runs if f"cpu:{key}" in run]
        print(f"{name:<28} median {statistics.median(values):6.2f} s   (runs: "
              + ", ".join(f"{v:.2f}" for v in values) + ")"
              + (f"   CPU {statistics.median(cpu):5.2f} s" if cpu else ""))

    show("first paint", "first_paint")
    for round_name, title in (("first", "first visit"), ("again", "second visit")):
        for _, screen, _ in SWITCHES:
            show(f"{title}: {screen}", f"{round_name}:{screen}")
        worst = [max(run[f"{round_name}:{s}"] for _, s, _ in SWITCHES) for run in runs]
        worst_cpu = [max(run[f"cpu:{round_name}:{s}"] for _, s, _ in SWITCHES) for run in runs]
        print(f"{'  slowest ' + title:<28} median {statistics.median(worst):6.2f} s"
              f"{'':<{8 + 7 * len(runs)}}CPU {statistics.median(worst_cpu):5.2f} s")
    show("quit", "quit")
    print("heavy modules loaded at first paint:", ", ".join(runs[0]["heavy_at_first_paint"]) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
