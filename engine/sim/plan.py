"""An acquisition plan: the exposures ELVIS would take for a list of tests, in order.

OBSIDs grow by one per exposure; the clock advances by the timing model's frame duration,
so simulated day folders carry the same time stamps a real session would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from ..campaign.catalogue import TestDefinition, resolve
from ..campaign.chamber import ChamberProfile
from ..campaign.timing import frame_seconds


@dataclass(frozen=True)
class PlannedExposure:
    obsid: int
    when: datetime  # time stamp ELVIS gives the exposure (end of readout)
    test: str
    column_index: int  # 0-based column of the test
    frame_in_column: int
    params: Mapping[str, Any] = field(repr=False)  # every script parameter of the column

    @property
    def column_label(self) -> str:
        return str(self.params.get("comments", ""))


def expand_tests(names: Iterable[str]) -> list[TestDefinition]:
    """Instances in the given order; handles expand; surrogate tests (no acquisition) drop out."""
    tests: list[TestDefinition] = []
    for name in names:
        for test in resolve(name):
            if test.acquires and test not in tests:
                tests.append(test)
    return tests


def plan_acquisition(
    tests: Iterable[TestDefinition],
    chamber: ChamberProfile,
    differential: Mapping[str, Any] | None = None,
    first_obsid: int = 1000,
    start: datetime = datetime(2019, 3, 12, 9, 0, 0),
) -> list[PlannedExposure]:
    plan: list[PlannedExposure] = []
    obsid = first_obsid
    clock = start
    for test in tests:
        for index, column in enumerate(test.script_columns(chamber, differential)):
            for frame in range(int(column["frames"])):
                clock += timedelta(seconds=round(frame_seconds(column)))
                plan.append(PlannedExposure(obsid, clock, test.name, index, frame, column))
                obsid += 1
    return plan
