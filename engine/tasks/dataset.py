"""A test's data set: which exposures of the EXP_LOG belong to it, and where their frames are.

When a test was aborted and resubmitted, its name appears with more exposures than its
structure holds; unless OBSID limits say otherwise, the newest complete run is taken and the
choice is said in the notes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..formats.names import hk_filename, parse_date_token

CCDS = (1, 2, 3)


@dataclass(frozen=True)
class FrameRef:
    obsid: int
    ccd: int
    path: Path
    row: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ExposureRef:
    obsid: int
    column: int  # 0-based column of the test's structure; -1 beyond the structure
    frames: Mapping[int, FrameRef]  # ccd -> frame (CCDs missing from the log are absent)

    @property
    def row(self) -> Mapping[str, Any]:
        """The exposure's log row (that of its first CCD): what was commanded."""
        return self.frames[min(self.frames)].row


@dataclass
class DataSet:
    test: str
    day_folder: Path
    exposures: list[ExposureRef]
    expected_frames: int
    frames_per_column: list[int]
    notes: list[str] = field(default_factory=list)

    @property
    def obsids(self) -> list[int]:
        return [e.obsid for e in self.exposures]

    @property
    def obsid_range(self) -> tuple[int, int] | None:
        return (self.exposures[0].obsid, self.exposures[-1].obsid) if self.exposures else None

    def frames(self, ccd: int) -> list[FrameRef]:
        return [e.frames[ccd] for e in self.exposures if ccd in e.frames]

    def hk_path(self, exposure: ExposureRef) -> Path | None:
        """The exposure's HK file, found by OBSID (its time stamp may differ by a second)."""
        folder = exposure.frames[min(exposure.frames)].path.parent
        exact = folder / hk_filename(exposure.obsid, parse_date_token(str(exposure.row["date"])))
        if exact.exists():
            return exact
        found = sorted(folder.glob(f"HK_{exposure.obsid}_*_ROE1.txt"))
        return found[0] if found else None


def obsid_ranges(numbers: Iterable[int], sep: str = ", ") -> str:
    """OBSIDs as runs: [5, 6, 7, 9] -> "5-7, 9" ("" for none)."""
    numbers = sorted(numbers)
    if not numbers:
        return ""
    spans, start, previous = [], numbers[0], numbers[0]
    for n in numbers[1:]:
        if n != previous + 1:
            spans.append((start, previous))
            start = n
        previous = n
    spans.append((start, previous))
    return sep.join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


def select_dataset(
    rows: Iterable[Mapping[str, Any]],
    test: str,
    frames_per_column: list[int],
    day_folder: Path,
    obsids: tuple[int, int] | None = None,
    start_obsid: int | None = None,
) -> DataSet:
    """The exposures of `test` in the log rows, matched to the columns of its structure."""
    by_obsid: dict[int, dict[int, FrameRef]] = defaultdict(dict)
    for row in rows:
        if str(row.get("test", "")).strip().upper() != test.upper():
            continue
        obsid = int(row["ObsID"])
        if obsids and not obsids[0] <= obsid <= obsids[1]:
            continue
        if start_obsid is not None and obsid < start_obsid:
            continue
        ccd = int(str(row["CCD"]).upper().replace("CCD", ""))
        folder = Path(row["_folder"]) if row.get("_folder") else day_folder  # logs of several days
        by_obsid[obsid][ccd] = FrameRef(obsid, ccd, folder / f"{row['File_name']}.fits", row)
    found = sorted(by_obsid)
    expected = sum(frames_per_column)
    notes: list[str] = []
    if obsids is None and len(found) > expected:
        dropped = found[:-expected]
        found = found[-expected:]
        notes.append(
            f"{len(dropped) + expected} exposures of {test} in the log, {expected} expected: taking the newest "
            f"complete run, OBSIDs {found[0]}-{found[-1]}; OBSIDs {dropped[0]}-{dropped[-1]} look like an "
            f"aborted attempt (give OBSID limits or a start OBSID to choose otherwise)")
    columns = [index for index, frames in enumerate(frames_per_column) for _ in range(frames)]
    exposures = [ExposureRef(obsid, columns[i] if i < len(columns) else -1, dict(by_obsid[obsid]))
                 for i, obsid in enumerate(found)]
    return DataSet(test, day_folder, exposures, expected, list(frames_per_column), notes)
