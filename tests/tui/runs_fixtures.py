"""Helpers for the Runs, Log and Results screen tests: run records and logs with fixed times (for
snapshots), polling for a condition while the app runs (the screens' workers never all finish:
the log is followed for ever, so `settle` cannot be used once those screens are open), and
stopping whatever background run a failed test leaves behind."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

from textual.pilot import Pilot

from engine.pipeline.runs import RunRecord, list_runs, run_status, stop_run

WAIT_S = 90.0  # generous: a loaded 2-core machine starts Python processes slowly


async def start_dialog_in_wait_mode(pilot: Pilot):
    """On the Runs screen: n opens the start-run dialog, its mode list goes from aim to wait (by
    keys, as a user does): the dialog."""
    from vison_tui.dialogs.start_run import StartRunDialog

    app = pilot.app
    await pilot.press("n")
    dialog = await wait_for(pilot, lambda: isinstance(app.screen, StartRunDialog) and app.screen, "the dialog")
    await pilot.press("tab", "enter")  # the mode list
    await pilot.pause()
    await pilot.press("down", "enter")  # aim -> wait
    assert dialog.query_one("#mode").value == "wait"
    return dialog


async def wait_for(pilot: Pilot, condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> object:
    """Let the app run until `condition()` is true (returns its value); fail saying `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await pilot.pause(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_leftover_runs(results: Path) -> None:
    for record in list_runs(results):
        if run_status(record).alive:
            stop_run(record, timeout=5, force=True)


# -- fixed-time records --------------------------------------------------------------------------

def _test(name: str, state: str, minutes: float | None = None, flags=(), obsids=None, subtask=None, note=None,
          frames=None) -> dict:
    return {"test": name, "state": state, "subtask": subtask, "frames": frames, "obsids": obsids, "flags": list(flags),
            "minutes": minutes, "started": "2019-03-12T10:15:05" if state != "waiting" else None,
            "finished": None, "note": note}


def write_run(results: Path, run_id: str, *, state: str, mode: str, session: str, started: str, updated: str,
              tests: list[dict], end_reason: str | None = None, exit_code: int | None = None,
              log: Path | None = None, activity: str = "", check_only: bool = False) -> Path:
    """A run folder as a run leaves it; its pid is this process with another start time: not alive."""
    folder = results / "runs" / run_id
    folder.mkdir(parents=True)
    info = {"id": run_id, "folder": str(folder), "pid": os.getpid(), "pid_start": 1, "pgid": os.getpid(),
            "host": socket.gethostname(), "user": "tester", "config": str(results.parent / "campaign.toml"),
            "session": session, "mode": mode, "check_only": check_only, "tag": "", "results": str(results),
            "started": started, "argv": [str(results.parent / "campaign.toml"), "--session", session],
            "cwd": str(results.parent), "detached": True, "output": str(folder / "output.txt"),
            "log": str(log) if log else None}
    (folder / "run.json").write_text(json.dumps(info, indent=2))
    counts = {"tests": len(tests)}
    for key in ("done", "errors", "running", "skipped", "abandoned", "prepared"):
        counts[key] = sum(1 for t in tests if t["state"] == key)
    counts["waiting"] = counts["tests"] - sum(v for k, v in counts.items() if k != "tests")
    state_json = {"run_id": run_id, "state": state, "activity": activity or state, "started": started,
                  "updated": updated, "mode": mode, "session": session, "current": None, "message": "",
                  "tests": tests, "progress": counts, "end_reason": end_reason, "exit_code": exit_code}
    (folder / "state.json").write_text(json.dumps(state_json, indent=2))
    (folder / "output.txt").write_text(f"[10:15:00] Pipeline started ({mode})\n")
    return folder


def pipeline_log_text(run_id: str = "FM20190312_101500_D11", blocks: int = 1) -> str:
    """A pipeline log in the engine's format: three tasks, one failing with a traceback, flags raised.
    `blocks` > 1 repeats the tasks (a long log)."""
    lines = []
    stamp = "2019-03-12 10:15:{:02d},{:03d} - {} - {}"

    def record(level: str, message: str, second: int = 0, milli: int = 0) -> None:
        lines.append(stamp.format(second % 60, milli % 1000, level, message))

    record("INFO", f"_\nStarting FM Calib. Pipeline\nPipeline ID: {run_id}\nBLOCK ID: NOSTROMO\nChamber: B_NOSTROMO\n"
                   "vison version: 0.1.0\nTasks: ['BIAS01', 'DARK01', 'BIAS02']\n_")
    record("INFO", "Mode: aim; session D11; jobs 1")
    for block in range(blocks):
        for n, (test, family) in enumerate((("BIAS01", "bias"), ("DARK01", "dark"), ("BIAS02", "bias"))):
            second = (block * 3 + n) * 2
            record("INFO", f"Running Task: {test}", second)
            for sub in ("init", "check", "prep", "basic", "meta", "report"):
                record("INFO", f"Executing {sub}: engine.tasks.{family}", second, 10)
                if test == "DARK01" and sub == "basic":
                    record("ERROR", "Sub-task basic of DARK01 failed:\nTraceback (most recent call last):\n"
                                    '  File "engine/tasks/base.py", line 77, in run\n    method(ctx)\n'
                                    '  File "engine/tasks/dark.py", line 120, in basic\n'
                                    "    raise ValueError('no valid pixel in CCD2 F')\n"
                                    "ValueError: no valid pixel in CCD2 F", second, 500)
                    break
                if test == "BIAS01" and sub == "check":
                    record("WARNING", "no HK file for OBSIDs 1004: HK not checked there", second, 20)
                record("INFO", f"0.0 minutes in running Sub-task: {sub}", second, 30)
            errors = test == "DARK01"
            record("INFO", f"Task {test} exited with Errors: {errors}", second + 1, 900)
            flags = ["HK_OOL"] if test == "BIAS01" else (["SUBTASKCRASH"] if errors else [])
            record("INFO", "#" * 70 + f"\nPipeline ID: {run_id}\n_\n{test}\n"
                           f"Executed{' with Error(s)' if errors else ''} in 0.0 minutes\n"
                           f"OBSIDs range = [1000,1009]\nRaised Flags = {flags}\n_\n" + "#" * 70, second + 1, 950)
    record("INFO", "Pipeline finished.", 59, 999)
    return "\n".join(lines) + "\n"


def fixture_runs(results: Path) -> dict[str, Path]:
    """Three runs with fixed times: finished (with a log), died mid-test, stopped waiting."""
    logs = results / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "Calib_FM20190312_101500_D11.log"
    log.write_text(pipeline_log_text())
    finished = write_run(
        results, "FM20190312_101500_D11", state="finished", mode="aim", session="D11", started="2019-03-12T10:15:00",
        updated="2019-03-12T10:16:05", end_reason="finished: all 3 tests analysed", exit_code=1, log=log,
        tests=[_test("BIAS01", "done", 0.51, ["HK_OOL"], [1000, 1009]),
               _test("DARK01", "errors", 0.2, ["SUBTASKCRASH"], [1010, 1013]),
               _test("BIAS02", "done", 0.42, [], [1014, 1023])])
    died = write_run(
        results, "FM20190312_111000_D11", state="running", mode="aim", session="D11", started="2019-03-12T11:10:00",
        updated="2019-03-12T11:11:00", activity="analysing DARK01: basic",
        tests=[_test("BIAS01", "done", 0.5, ["HK_OOL"], [1000, 1009]),
               _test("DARK01", "running", None, [], None, subtask="basic"),
               _test("BIAS02", "waiting")])
    stopped = write_run(
        results, "FM20190312_090000_D12", state="stopped", mode="wait", session="D12", started="2019-03-12T09:00:00",
        updated="2019-03-12T09:42:10", end_reason="stopped (SIGTERM received)", exit_code=130, check_only=True,
        tests=[_test("CHINJ01", "done", 1.25, [], [2000, 2039]),
               _test("FOCUS00_800", "skipped", None, [], None, note="12/20 exposures when the run ended",
                     frames=[12, 20])])
    return {"finished": finished, "died": died, "stopped": stopped, "log": log}


def record_of(folder: Path) -> RunRecord:
    return RunRecord.load(folder)


# -- fixed results (snapshots do not follow the engine's numbers) -----------------------------------

def _bias_values(ccd: int, quadrant: int) -> dict:
    ron = round(1.0 + 0.05 * ccd + 0.03 * quadrant, 4)
    offset = round(2500.0 + 100 * ccd + 25 * quadrant, 2)
    return {"offset_prescan_adu": offset, "offset_image_adu": round(offset + 0.02, 2),
            "offset_overscan_adu": round(offset - 0.01, 2), "ron_prescan_adu": round(ron + 0.01, 4),
            "ron_image_adu": ron, "ron_overscan_adu": round(ron - 0.01, 4), "ron_image_e": round(ron * 3.3, 3),
            "gain_e_per_adu_used": 3.3, "master_bias_std_adu": round(0.4 + 0.01 * quadrant, 4)}


def _result(test: str, family: str, values, flags: list[dict], products: list[str]) -> dict:
    return {"test": test, "handle": test, "family": family, "session": "D11", "block": "NOSTROMO",
            "chamber": "B_NOSTROMO", "mode": "full/aim", "vison_version": "0.1.0", "started": "2019-03-12T10:15:00",
            "finished": "2019-03-12T10:15:30", "obsids": [1000, 1009], "exposures": 10, "expected_exposures": 10,
            "day_folder": "/nonexistent/12_Mar_19", "errors": False, "error_messages": [],
            "flags": sorted({f["flag"] for f in flags}), "flag_reasons": flags, "timings_s": {"basic": 1.0},
            "subtasks_skipped": [], "notes": [], "values": {"gain_source": "nominal 3.3 e-/ADU"},
            "ccds": {f"CCD{c}": {q: values(c, i) for i, q in enumerate("EFGH")} for c in (1, 2, 3)},
            "products": products, "figures": [], "report": "report.md"}


def fixture_results(results: Path) -> Path:
    """Session D11 with fixed results: BIAS01 (a flag, a master bias), DARK01, BIAS02 not analysed."""
    import numpy as np
    from astropy.io import fits

    from engine.formats.geometry import SMALL

    session = results / "D11"
    bias = session / "BIAS01"
    (bias / "products").mkdir(parents=True)
    product = "products/EUC_MASTERBIAS_CCD1_SN_14888-88-81_NOSTROMO.fits"
    flags = [{"flag": "HK_OOL", "reason": "[warning] CCD2_TEMP_T min = -125.5 C: outside [-121, -119]", "obsid": 1003},
             {"flag": "RON_OOL", "reason": "std of the raw image 1.52 ADU above 1.44", "ccd": 3, "quadrant": "H"}]
    (bias / "result.json").write_text(json.dumps(_result("BIAS01", "bias", _bias_values, flags, [product])))
    (bias / "report.md").write_text("# BIAS01 — offsets and RON per quadrant\n\n## Flags\n\n- **HK_OOL** OBSID 1003\n")
    rows, cols = SMALL.shape
    y, x = np.mgrid[0:rows, 0:cols]
    stack = (np.sin(x / 9.0) + np.cos(y / 7.0)).astype(np.float32)  # a pattern that shows the scaling
    stack[20:24, 30:34] = 8.0  # a hot spot
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(stack, name="STACK"),
                  fits.ImageHDU(np.full_like(stack, 0.5), name="STD")]).writeto(bias / product)
    dark = session / "DARK01"
    dark.mkdir(parents=True)
    dark_values = lambda c, q: {"dark_e_per_pix_per_hour": round(0.1 * c + 0.2 * q, 3), "hot_pixels": c + q}
    (dark / "result.json").write_text(json.dumps(_result("DARK01", "dark", dark_values, [], [])))
    (dark / "report.md").write_text("# DARK01\n")
    return session
