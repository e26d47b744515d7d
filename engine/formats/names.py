"""ELVIS file and folder names: frames, HK files, EXP_LOGs, day folders, date tokens.

ELVIS stamps every exposure with a date token `DDMMYYDhhmmssT` (e.g. 251116D150614T);
older ELVIS and vison's simulator put an underscore after the `D` (231016D_135042T).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_TOKEN_RE = re.compile(r"^(\d{2})(\d{2})(\d{2})D_?(\d{2})(\d{2})(\d{2})T?$")
_FRAME_RE = re.compile(
    r"^EUC_(?P<obsid>\d+)_(?P<token>\d{6}D_?\d{6}T)_ROE(?P<roe>\d)_CCD(?P<ccd>\d)(?:\.fits)?$"
)
_HK_RE = re.compile(r"^HK_(?P<obsid>\d+)_(?P<token>\d{6}D_?\d{6}T)_ROE(?P<roe>\d)\.txt$")
_EXPLOG_RE = re.compile(r"^EXP_LOG_(?P<date>\d{6})\.txt$")
_DAY_RE = re.compile(r"^(\d{2})_([A-Z][a-z]{2})_(\d{2})$")


def _year(two_digits: int) -> int:
    # ELVIS writes two-digit years; the lab never ran before 1980 nor after 2079.
    return 2000 + two_digits if two_digits < 80 else 1900 + two_digits


def format_date_token(when: datetime) -> str:
    """`DDMMYYDhhmmssT`, as ELVIS stamps an exposure."""
    return when.strftime("%d%m%yD%H%M%ST")


def parse_date_token(token: str) -> datetime:
    """Parse `DDMMYYDhhmmssT` (also the `D_` form and without the trailing T)."""
    match = _TOKEN_RE.match(token.strip())
    if not match:
        raise ValueError(f"not an ELVIS date token (DDMMYYDhhmmssT): {token!r}")
    day, month, year, hour, minute, second = (int(g) for g in match.groups())
    return datetime(_year(year), month, day, hour, minute, second)


@dataclass(frozen=True)
class FrameName:
    obsid: int
    when: datetime
    roe: int
    ccd: int

    @property
    def stem(self) -> str:
        return frame_stem(self.obsid, self.when, self.ccd, self.roe)


def frame_stem(obsid: int, when: datetime, ccd: int, roe: int = 1) -> str:
    """`EUC_<obsid>_<DDMMYY>D<hhmmss>T_ROE1_CCD<n>`, the EXP_LOG's File_name."""
    return f"EUC_{obsid}_{format_date_token(when)}_ROE{roe}_CCD{ccd}"


def frame_filename(obsid: int, when: datetime, ccd: int, roe: int = 1) -> str:
    return frame_stem(obsid, when, ccd, roe) + ".fits"


def parse_frame_name(name: str | Path) -> FrameName:
    """Parse a frame's file name (either date-token form, with or without `.fits`)."""
    base = Path(name).name
    match = _FRAME_RE.match(base)
    if not match:
        raise ValueError(
            f"{base!r} is not an ELVIS frame name (EUC_<obsid>_<DDMMYY>D<hhmmss>T_ROE1_CCD<n>.fits)"
        )
    return FrameName(
        obsid=int(match["obsid"]),
        when=parse_date_token(match["token"]),
        roe=int(match["roe"]),
        ccd=int(match["ccd"]),
    )


def hk_filename(obsid: int, when: datetime, roe: int = 1) -> str:
    """Per-exposure HK file: `HK_<obsid>_<DDMMYY>D<hhmmss>T_ROE1.txt`."""
    return f"HK_{obsid}_{format_date_token(when)}_ROE{roe}.txt"


def parse_hk_filename(name: str | Path) -> tuple[int, datetime, int]:
    base = Path(name).name
    match = _HK_RE.match(base)
    if not match:
        raise ValueError(f"{base!r} is not an ELVIS HK file name (HK_<obsid>_<DDMMYY>D<hhmmss>T_ROE1.txt)")
    return int(match["obsid"]), parse_date_token(match["token"]), int(match["roe"])


def explog_filename(day: datetime) -> str:
    """`EXP_LOG_<DDMMYY>.txt`, one per day folder."""
    return f"EXP_LOG_{day.strftime('%d%m%y')}.txt"


def is_explog_name(name: str | Path) -> bool:
    return bool(_EXPLOG_RE.match(Path(name).name))


def day_folder_name(day: datetime) -> str:
    """`DD_Mmm_YY` with an English month whatever the locale (e.g. 12_Mar_19)."""
    return f"{day.day:02d}_{_MONTHS[day.month - 1]}_{day.year % 100:02d}"


def parse_day_folder(name: str | Path) -> datetime:
    base = Path(name).name
    match = _DAY_RE.match(base)
    if not match or match.group(2) not in _MONTHS:
        raise ValueError(f"{base!r} is not a day folder name (DD_Mmm_YY, e.g. 12_Mar_19)")
    day, month, year = match.groups()
    return datetime(_year(int(year)), _MONTHS.index(month) + 1, int(day))


def script_date(day: datetime) -> str:
    """`DDMmmYY` as in script and inventory names (01Apr19)."""
    return f"{day.day:02d}{_MONTHS[day.month - 1]}{day.year % 100:02d}"


def newest_day_folder(data: Path | None) -> Path | None:
    """The day folder (DD_Mmm_YY) of the latest date under `data` (latest written on a tie)."""
    if data is None or not data.is_dir():
        return None
    found = []
    for child in data.iterdir():
        try:
            if child.is_dir():
                found.append((parse_day_folder(child.name), child.stat().st_mtime, child))
        except (ValueError, OSError):
            continue  # not a day folder
    return max(found, key=lambda f: f[:2])[2] if found else None
