"""Flags a task raises, each with the reason a user needs to act on it.

The names and their order (bit n = 2**n) are those the campaign's logs used; a raised flag
always carries why: which CCD, quadrant or frame, and the measured value against its limit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FLAG_NAMES: tuple[str, ...] = (
    "MISSDATA", "POORQUALDATA", "BADDATA", "WRONGTEST", "WRONG_ROE_CONF", "SOURCEON", "SOURCEOFF",
    "WRONGSOURCE", "HK_OOL", "CCDTEMP_OOL", "UNDERPERFORM", "REQNOTMET", "BADDATAPROD", "DEADCCD",
    "DEADQUAD", "LOWMEMORY", "TOOSLOW", "UNKNOWN", "RON_OOL", "FLUENCE_OOL", "FLUENCEGRAD_OOL",
    "FOCUS_OOL", "BGD_OOL", "CCDSATUR", "FLUX_OOL", "STARS_MISSING", "SUBTASKCRASH", "BADFIT",
    "SATURATION", "LOSTPIXELS", "NONSATURATION",
    "MISSCALPROD",  # ours (bit 31): a required calibration product was missing, the nominal was used
)


@dataclass(frozen=True)
class RaisedFlag:
    flag: str
    reason: str
    ccd: int | None = None
    quadrant: str | None = None
    obsid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def __str__(self) -> str:
        where = " ".join(p for p in (
            f"OBSID {self.obsid}" if self.obsid is not None else "",
            f"CCD{self.ccd}" if self.ccd is not None else "",
            f"Q{self.quadrant}" if self.quadrant else "") if p)
        return f"{self.flag}: {where + ': ' if where else ''}{self.reason}"


class FlagBook:
    """The flags raised by one task, in the order raised, with their reasons."""

    def __init__(self) -> None:
        self.raised: list[RaisedFlag] = []

    def raise_flag(self, flag: str, reason: str, *, ccd: int | None = None, quadrant: str | None = None,
                   obsid: int | None = None) -> RaisedFlag:
        if flag not in FLAG_NAMES:
            raise ValueError(f"unknown flag {flag!r}")
        raised = RaisedFlag(flag, reason, ccd, quadrant, obsid)
        if raised not in self.raised:
            self.raised.append(raised)
        return raised

    def names(self) -> list[str]:
        """Raised flag names, each once, in bit order (as the pipeline log lists them)."""
        present = {r.flag for r in self.raised}
        return [name for name in FLAG_NAMES if name in present]

    def word(self) -> int:
        return sum(2 ** FLAG_NAMES.index(name) for name in self.names())

    def reasons(self, flag: str) -> list[RaisedFlag]:
        return [r for r in self.raised if r.flag == flag]

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.raised]
