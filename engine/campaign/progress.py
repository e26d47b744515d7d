"""Acquisition progress: how many frames of each test are in, against the catalogue's structure.

A frame counts once its OBSID is logged for every CCD; on disk, once its three FITS files exist.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping

from .catalogue import UnknownTestError, resolve_test
from .chamber import ChamberProfile

CCD_NAMES = ("CCD1", "CCD2", "CCD3")


@dataclass(frozen=True)
class TestProgress:
    __test__ = False  # not a pytest test class

    test: str
    expected: int | None  # None: not a catalogue test
    logged: int  # exposures logged for all CCDs
    on_disk: int  # of those, exposures whose frame files all exist
    obsids: tuple[int, ...]

    @property
    def complete(self) -> bool:
        return self.expected is not None and self.on_disk >= self.expected

    @property
    def state(self) -> str:
        if self.expected is None:
            return "unknown test"
        if self.logged > self.expected:
            return "extra frames (an aborted attempt?)"
        if self.complete:
            return "complete"
        if self.logged > self.on_disk:
            return "files missing or still being written"
        return "acquiring"

    def describe(self) -> str:
        expected = "?" if self.expected is None else str(self.expected)
        return f"{self.test} {self.on_disk}/{expected} frames ({self.state})"


def acquisition_progress(rows: Iterable[Mapping[str, Any]], chamber: ChamberProfile,
                         day_folder: Path | None = None, *,
                         present: Collection[str] | None = None) -> list[TestProgress]:
    """Per test, in order of first appearance in the EXP_LOG rows.

    On disk means: in `present` (file names a watcher already knows complete) when given, else
    found in `day_folder` when given, else logged is taken as on disk.
    """
    ccds_by_obsid: dict[tuple[str, int], set[str]] = defaultdict(set)
    files: dict[int, list[str]] = defaultdict(list)
    order: list[str] = []
    for row in rows:
        test = str(row.get("test") or "")
        if test not in order:
            order.append(test)
        ccds_by_obsid[(test, int(row["ObsID"]))].add(str(row.get("CCD")))
        files[int(row["ObsID"])].append(str(row.get("File_name")))
    progress = []
    for test in order:
        obsids = sorted(o for (t, o), ccds in ccds_by_obsid.items() if t == test and set(CCD_NAMES) <= ccds)
        if present is not None:
            on_disk = [o for o in obsids if all(f"{name}.fits" in present for name in files[o])]
        elif day_folder is not None:
            on_disk = [o for o in obsids if all((day_folder / f"{name}.fits").is_file() for name in files[o])]
        else:
            on_disk = obsids
        try:
            expected = resolve_test(test).total_frames(chamber)
        except UnknownTestError:
            expected = None
        progress.append(TestProgress(test, expected, len(obsids), len(on_disk), tuple(obsids)))
    return progress
