"""What lets a run overlap its steps: the CLI imports only the command given (so `run` starts its
workers' fork server before the pipeline's imports), executors start units without waiting, and a
master's planes compressed early (as soon as the pass has stacked a CCD) are the planes `meta`
would have compressed itself, byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from engine.cli.main import COMMAND_MODULES, build_parser, command
from engine.tasks.executor import LocalExecutor
from engine.tasks.stacking import (
    PlanesUnderway,
    allocate_fits,
    compress_plane,
    compressed_planes,
    drop_planes_underway,
    plane_calls,
    start_compression,
)

ROOT = Path(__file__).resolve().parents[1]


def test_command_table_names_every_command() -> None:
    """COMMAND_MODULES is what `vison-engine --help` lists and how a command finds its module:
    each entry's module defines that command, and the full parser has exactly these commands."""
    for name in COMMAND_MODULES:
        assert command(name).NAME == name
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == list(COMMAND_MODULES)


def test_run_command_loads_no_pipeline_before_its_workers() -> None:
    """Parsing `vison-engine run` (up to where run() starts the fork server) imports neither numpy
    nor the analyses nor another command's dependencies (the simulator's scipy, openpyxl)."""
    code = ("import sys; from engine.cli.main import build_parser; "
            "build_parser('run').parse_args(['run', 'c.toml']); "
            "print(sorted(m for m in ('numpy', 'scipy', 'openpyxl', 'astropy', 'engine.pipeline.runner', "
            "'engine.tasks.registry', 'engine.cli.demo_cmd') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _square(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative {x}")
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_start_gives_the_results_of_map(workers: int) -> None:
    """Executor.start: the results of map, in call order, each when asked; a unit's exception is
    raised when its result is asked for, not before, and the other results stay available."""
    with LocalExecutor(workers) as executor:
        calls = [(i,) for i in range(5)]
        assert executor.start(_square, calls).results() == executor.map(_square, calls) == [0, 1, 4, 9, 16]
        underway = executor.start(_square, [(3,), (-1,), (4,)])
        assert underway.result(2) == 16
        with pytest.raises(ValueError, match="negative -1"):
            underway.result(1)
        assert underway.result(0) == 9


class _Context:
    """What start_compression and compressed_planes use of a TaskContext."""

    def __init__(self, executor: Any):
        self.executor, self.results = executor, {}
        self.mapped: list[tuple] = []

    def have(self, kind: type) -> Any:
        return self.results.get(kind)

    def keep(self, result: Any) -> None:
        self.results[type(result)] = result

    def map_units(self, function: Any, calls: list[tuple]) -> list[Any]:
        self.mapped += calls
        return [function(*call) for call in calls]


@pytest.fixture()
def stack(tmp_path: Path) -> Path:
    raw = tmp_path / ".EUC_MASTERBIAS_CCD1.float32.fits"
    offsets = allocate_fits(raw, fits.Header(), ("STACK", "STD"), (150, 90),
                            {name: fits.Header([("BUNIT", "ADU")]) for name in ("STACK", "STD")})
    rng = np.random.default_rng(3)
    for name, level in (("STACK", 0.0), ("STD", 1.5)):
        plane = np.memmap(raw, dtype=">f4", mode="r+", offset=offsets[name], shape=(150, 90))
        plane[:] = rng.normal(level, 0.5, (150, 90))
        plane.flush()
        del plane
    return raw


def _planes_bytes(paths: list[Path]) -> list[bytes]:
    return [path.read_bytes() for path in paths]


def test_planes_compressed_early_are_those_compressed_late(stack: Path, tmp_path: Path) -> None:
    """The planes started early are taken (no unit run again) and are byte for byte what
    compress_plane writes from the same stack with the same read noise."""
    final = tmp_path / "EUC_MASTERBIAS_CCD1.fits"
    calls = plane_calls(final, stack, 1.47, ("STACK", "STD"))
    expected = _planes_bytes([compress_plane(*call[:4], tmp_path / f"direct{i}.fits") for i, call in enumerate(calls)])
    with LocalExecutor(2) as executor:
        ctx = _Context(executor)
        start_compression(ctx, final, stack, 1.47, ("STACK", "STD"))
        assert set(ctx.have(PlanesUnderway).started) == set(calls)
        planes = compressed_planes(ctx, calls)
    assert ctx.mapped == [] and PlanesUnderway not in ctx.results
    assert planes == [call[4] for call in calls]
    assert _planes_bytes(planes) == expected


def test_planes_started_with_another_noise_are_compressed_again(stack: Path, tmp_path: Path) -> None:
    """`meta` quantises against another read noise than the pass (its frames differ): the early
    planes are dropped and the planes compressed with meta's step, under the same names."""
    final = tmp_path / "EUC_MASTERBIAS_CCD1.fits"
    with LocalExecutor(2) as executor:
        ctx = _Context(executor)
        start_compression(ctx, final, stack, 1.47, ("STACK", "STD"))
        calls = plane_calls(final, stack, 1.62, ("STACK", "STD"))
        planes = compressed_planes(ctx, calls)
    assert ctx.mapped == calls
    for path, call in zip(planes, calls):
        with fits.open(path) as hdus:
            assert hdus[1].header["QSTEP"] == pytest.approx(call[2])
            assert hdus[1].header["QRON"] == pytest.approx(1.62)


def test_planes_underway_dropped_before_a_restack(stack: Path, tmp_path: Path) -> None:
    """When `meta` stacks again (into the same float32 file), the planes started from the pass's
    stack are waited for and removed first: none of them can be taken, nor write after."""
    final = tmp_path / "EUC_MASTERBIAS_CCD1.fits"
    with LocalExecutor(2) as executor:
        ctx = _Context(executor)
        start_compression(ctx, final, stack, 1.47, ("STACK", "STD"))
        assert drop_planes_underway(ctx) == {}
    assert PlanesUnderway not in ctx.results
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".EUC_MASTERBIAS_CCD1.S")]
