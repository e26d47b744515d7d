"""`prep` of the families that work on offset-subtracted frames (bias, dark).

Per usable frame and quadrant the offset is the 5-sigma clipped mean of the prescan. It comes
from the raw-frame measurements (measures.py) that the generic check made: the frames are not
read again for it (if the check was switched off, `prep` has them measured). Frames missing,
unreadable, or of another shape than the test's are left out, each with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..formats.geometry import QUADRANTS, CCDGeometry
from .base import AnalysisTask
from .context import TaskContext
from .measures import FrameStats, measure_frames


@dataclass(frozen=True)
class FrameOffsets:
    """A usable frame of a CCD with its raw statistics."""

    obsid: int
    path: Path
    stats: FrameStats

    def level(self, quadrant: str, region: str = "prescan") -> float:
        """Clipped mean of a region of a quadrant (ADU); the prescan's is the frame's offset."""
        return getattr(self.stats[quadrant], region).clipped_mean

    @property
    def offsets(self) -> dict[str, float]:
        """Quadrant -> offset (ADU)."""
        return {q: self.level(q) for q in QUADRANTS}


@dataclass
class PreparedData:
    """What `prep` leaves for the next sub-tasks: the usable frames per CCD and the geometry."""

    geometry: CCDGeometry
    frames: dict[int, list[FrameOffsets]]  # ccd -> usable frames in OBSID order
    skipped: list[str] = field(default_factory=list)  # frames left out, with the reason

    @classmethod
    def produce(cls, ctx: TaskContext) -> "PreparedData":
        """When `prep` was switched off, the sub-tasks after it prepare the frames themselves."""
        return measure_offsets(ctx)


def measure_offsets(ctx: TaskContext) -> PreparedData:
    """Usable frames with their offsets; the test's geometry is that of its first readable frame."""
    measured = measure_frames(ctx)
    readable = [stats for stats in measured.values() if not isinstance(stats, str)]
    if not readable:
        raise RuntimeError(f"no readable frame of {ctx.test.name} on disk: nothing to analyse")
    geometry = readable[0].geometry
    prepared = PreparedData(geometry, {})
    for ccd in ctx.ccds:
        usable = []
        for ref in ctx.dataset.frames(ccd):
            stats = measured.get((ref.obsid, ccd))
            if stats is None:
                continue  # not on disk (the check says so)
            if isinstance(stats, str):
                prepared.skipped.append(f"CCD{ccd} OBSID {ref.obsid}: {stats}")
            elif stats.geometry.shape != geometry.shape:
                prepared.skipped.append(f"CCD{ccd} OBSID {ref.obsid}: frame shape {stats.geometry.shape} differs "
                                        f"from the test's {geometry.shape}")
            else:
                usable.append(FrameOffsets(ref.obsid, ref.path, stats))
        prepared.frames[ccd] = usable
    return prepared


class OffsetSubtractingTask(AnalysisTask):
    """Base of the families whose analyses subtract each frame's offsets (bias, dark)."""

    def prep(self, ctx: TaskContext) -> PreparedData:
        prepared = measure_offsets(ctx)
        for note in prepared.skipped:
            ctx.log.warning(f"left out of the analysis: {note}")
        counts = ", ".join(f"CCD{ccd} {len(frames)}" for ccd, frames in prepared.frames.items())
        ctx.log.info(f"offsets (prescan clipped mean) of the {prepared.geometry.name} frames: {counts}")
        return prepared
