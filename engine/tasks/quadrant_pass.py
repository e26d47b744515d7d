"""The check's read of a test's frames feeding a family's own extraction (Family.per_quadrant).

One work unit per (CCD, quadrant) reads that quadrant of each of the CCD's frames once, in OBSID
order: the check's statistics come from it (measures.read_quadrant_stats, the same numbers as a unit
per frame) and the family's consumer (family.QuadrantConsumers) gets the same counts, so an
extraction that needs every pixel (PTC pairs, trap dipoles, normalised flats) costs no second
read of the frames. A frame that cannot be read is said as measures.frame_unit says it; frames of
another shape than the first, or without an offset, are measured but not fed.

A consumer that fails (bad data it did not expect, a bug) does not stop the check: its error is
kept with the measurements, and the family's sub-task recomputes the old way and says why.
What the consumer saw is kept (`paths`, `offsets`) so a sub-task uses its result only when the
frames and offsets are those it would use (`QuadrantReadout.matches`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..formats.fits import FrameIndex, index_frame, read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .measures import QuadrantStats, read_quadrant_stats, unreadable_reason, window_rows


@dataclass(frozen=True)
class QuadrantReadout:
    """What one (CCD, quadrant) unit gives back."""

    measures: list[QuadrantStats | str]  # per frame given: this quadrant's statistics, or why unreadable
    shapes: list[tuple[int, int] | None]  # per frame: its shape (None: unreadable)
    fed: tuple[int, ...] = ()  # indices of the frames the consumer got
    paths: tuple[Path, ...] = ()  # ... their paths
    offsets: tuple[float, ...] = ()  # ... and offsets (prescan clipped means)
    result: Any = None  # the consumer's result
    error: str = ""  # why the consumer has no result

    def matches(self, paths: Sequence[Path], offsets: Sequence[float] | None = None) -> bool:
        """Did the consumer see these frames (a subset of those fed, in order) with these offsets?"""
        seen = dict(zip(self.paths, self.offsets))
        if self.error or any(Path(p) not in seen for p in paths):
            return False
        return offsets is None or all(seen[Path(p)] == float(o) for p, o in zip(paths, offsets))


def quadrant_readout_unit(unit: tuple[int, str], frames: list[tuple[Path, int, int | None]],
                          start: Callable[[str, CCDGeometry, Any], Any] | None, plan: Any,
                          indexes: Sequence[FrameIndex | None] | None = None) -> QuadrantReadout:
    """Worker: one quadrant of each frame of a CCD read once, measured, fed to the consumer;
    `indexes`: each frame's fits.FrameIndex (mapped without astropy parsing its headers) or None."""
    _, quadrant = unit
    measures: list[QuadrantStats | str] = [""] * len(frames)
    shapes: list[tuple[int, int] | None] = [None] * len(frames)
    fed: list[int] = []
    offsets: list[float] = []
    consumer, error, geometry = None, "", None
    for i, (path, vstart, vend) in enumerate(frames):
        try:
            with read_frame(path, indexes[i] if indexes else None) as frame:
                frame_geometry = frame.geometry
                # a fresh array per frame (no buffer reused): consumers keep some (QuadrantConsumer.add);
                # measured as it is read (one sweep over the file's words)
                counts, stats = read_quadrant_stats(frame, quadrant, frame_geometry,
                                                    window_rows(frame_geometry, vstart, vend))
        except (ValueError, OSError) as exc:  # FrameError is a ValueError
            measures[i] = unreadable_reason(path, exc)
            continue
        measures[i], shapes[i] = stats, frame_geometry.shape
        geometry = geometry or frame_geometry
        offset = stats.prescan.clipped_mean
        if start is None or error or frame_geometry.shape != geometry.shape or not math.isfinite(offset):
            continue
        try:
            if consumer is None:
                consumer = start(quadrant, geometry, plan)
            consumer.add(i, counts, stats)
        except Exception as exc:  # noqa: BLE001 - the family recomputes and says why; the check goes on
            error = f"{type(exc).__name__}: {exc} (frame {path.name})"
            continue
        fed.append(i)
        offsets.append(float(offset))
    result = None
    if consumer is not None and not error:
        try:
            result = consumer.result()
        except Exception as exc:  # noqa: BLE001 - as above
            error = f"{type(exc).__name__}: {exc}"
    return QuadrantReadout(measures, shapes, tuple(fed), tuple(frames[i][0] for i in fed), tuple(offsets),
                           result, error)


def run_readout(ctx: Any, frames_by_ccd: dict[int, list[Any]]) -> tuple[dict, dict]:
    """The check's measurements of a `per_quadrant` family: ((obsid, ccd) -> FrameStats or why
    not, (ccd, quadrant) -> QuadrantReadout). The consumers are fed only if a sub-task using them
    will run."""
    from .measures import frame_call, frames_from_quadrants

    spec = ctx.family.per_quadrant
    feeding = spec.wanted(ctx.enabled)
    calls, keys = [], []
    for ccd, frames in frames_by_ccd.items():
        if not frames:
            continue
        plan = spec.plan(ctx, ccd, frames) if feeding else None
        start = spec.start if plan is not None else None
        indexes = [index_frame(f.path) for f in frames]  # each frame's headers parsed once, here
        for q in QUADRANTS:
            keys.append((ccd, q))
            calls.append(((ccd, q), [frame_call(f) for f in frames], start, plan, indexes))
    readouts = dict(zip(keys, ctx.map_units(quadrant_readout_unit, calls)))
    by_frame: dict[tuple[int, int], Any] = {}
    for ccd, frames in frames_by_ccd.items():
        if not frames:
            continue
        by_frame.update(frames_from_quadrants(ccd, frames, [readouts[(ccd, q)] for q in QUADRANTS]))
    for (ccd, q), readout in readouts.items():
        if readout.error:
            ctx.log.warning(f"CCD{ccd}{q}: the extraction made with the check's read failed ({readout.error}): "
                            "its sub-tasks read the frames again")
    return by_frame, readouts
