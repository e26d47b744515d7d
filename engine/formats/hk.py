"""ELVIS housekeeping (HK) files: one per exposure, `HK_<obsid>_<DDMMYY>D<hhmmss>T_ROE1.txt`.

A tab-separated table: a header line of key names, then one row per HK sample (about one a
second during readout). The first column is the time stamp (`TimeStamp` as
`DD-MM-YY_HH:MM:SS` from ELVIS 6.0 on; `HK_timestamp` as `HH:MM:SS` in 5.7). Keys are
returned under the ELVIS 7.5.X names (`INTERNAL_KEYS`) whatever version wrote the file; a key
whose 7.5.X counterpart is unclear keeps its (stripped) name.

The value of a key for an exposure is the mean over the file's rows (`HKFile.stats` keeps
mean, std, min, max). Readings such as -273.15 mean "sensor not connected": they are kept, so
that the limit check can say so (see hklimits.py). What cannot be used is said in `problems`
(file, line, key): a cell that is not a number, an empty or NaN cell (once per key and file), a
binary line or file, a file with no sample.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .textfollow import TableFollower, read_text_lines
from .textlines import TextLine, is_binary, shown, split_fields
from .names import parse_date_token, parse_hk_filename

# --------------------------------------------------------------------------------------------
# Key lists per ELVIS version (time-stamp column first, as in the files)
# --------------------------------------------------------------------------------------------

_KEYS_5_7_04 = (
    "HK_timestamp",
    "HK_OD_Top_CCD1", "HK_OD_Bottom_CCD1", "HK_OD_Top_CCD2", "HK_OD_Bottom_CCD2",
    "HK_OD_Top_CCD3", "HK_OD_Bottom_CCD3", "HK_RD_Top_CCD1", "HK_RD_Bottom_CCD1",
    "HK_RD_Top_CCD2", "HK_RD_Bottom_CCD2", "HK_RD_Top_CCD3", "HK_RD_Bottom_CCD3",
    "HK_temp_top_CCD1", "HK_temp_bottom_CCD1", "HK_temp_top_CCD2", "HK_temp_bottom_CCD2",
    "HK_temp_top_CCD3", "HK_temp_bottom_CCD3", "HK_IG1_top", "HK_IG1_bot", "HK_IG2_top",
    "HK_IG2_bot", "HK_IDH", "HK_IDL", "HK_DD_bias", "HK_OG_bias", "HK_1.5V_ROE",
    "HK_VCCD_ROE", "HK_5VA_pos_ROE", "HK_5V_ref_ROE", "HK_10VA_ROE", "HK_5.2V_neg_ROE",
    "HK_3V_neg_ROE", "HK_VRclk_ROE", "HK_VRClk_Lo_ROE", "HK_3.3V_DIG_RPSU",
    "HK_I3.3V_DIG_RPSU", "HK_1.5V_DIG_RPSU", "HK_I1.5V_DIG_RPSU", "HK_28V_Pri_RPSU",
    "HK_I28V_RPSU", "HK_VAN_pos_RPSU", "HK_I+VAN_RPSU", "HK_VAN_neg_RPSU", "HK_I-VAN_RPSU",
    "HK_VCLK_RPSU", "HK_IVCLK_RPSU", "HK_VCCD_RPSU", "HK_IVCCD_RPSU", "HK_Temp1_RPSU",
    "HK_3.3V_ROE", "HK_Temp2_RPSU", "HK_VClk_ROE",
)
_KEYS_5_7_09 = _KEYS_5_7_04 + ("Video_TOP", "Video_BOT")

_KEYS_6_0_0 = (
    "TimeStamp",
    "HK_OD_Top_CCD1", "HK_OD_Bottom_CCD1", "HK_OD_Top_CCD2", "HK_OD_Bottom_CCD2",
    "HK_OD_Top_CCD3", "HK_OD_Bottom_CCD3", "HK_IG1_Top_CCD1", "HK_IG1_Bottom_CCD1",
    "HK_IG1_Top_CCD2", "HK_IG1_Bottom_CCD2", "HK_IG1_Top_CCD3", "HK_IG1_Bottom_CCD3",
    "HK_temp_top_CCD1", "HK_temp_bottom_CCD1", "HK_temp_top_CCD2", "HK_temp_bottom_CCD2",
    "HK_temp_top_CCD3", "HK_temp_bottom_CCD3", "HK_RD_top", "HK_RD_bot", "HK_IG2_top",
    "HK_IG2_bot", "HK_IDH", "HK_IDL", "HK_DD_bias", "HK_OG_bias", "HK_1.5V_ROE",
    "HK_VCCD_ROE", "HK_5VA_pos_ROE", "HK_5V_ref_ROE", "HK_10VA_ROE", "HK_5.2V_neg_ROE",
    "HK_3V_neg_ROE", "HK_VRclk_ROE", "HK_VRClk_Lo_ROE", "HK_3.3V_DIG_RPSU",
    "HK_I3.3V_DIG_RPSU", "HK_1.5V_DIG_RPSU", "HK_I1.5V_DIG_RPSU", "HK_28V_Pri_RPSU",
    "HK_I28V_RPSU", "HK_VAN_pos_RPSU", "HK_I+VAN_RPSU", "HK_VAN_neg_RPSU", "HK_I-VAN_RPSU",
    "HK_VCLK_RPSU", "HK_IVCLK_RPSU", "HK_VCCD_RPSU", "HK_IVCCD_RPSU", "HK_Temp1_RPSU",
    "HK_Temp2_RPSU", "HK_Video_TOP", "HK_Video_BOT", "HK_FPGA_TOP", "HK_FPGA_BOT",
    "HK_ID1", "HK_ID2", "HK_Viclk_ROE",
)

# The analogue keys of 6.3.0 on, in 6.3.0's order (6.5.X reordered the first few).
_ANALOGUE_6_3_0 = (
    "CCD1_OD_T", "CCD2_OD_T", "CCD3_OD_T", "COMM_RD_T", "CCD2_IG1_T", "CCD3_IG1_T",
    "CCD1_TEMP_T", "CCD2_TEMP_T", "CCD3_TEMP_T", "CCD1_IG1_T", "COMM_IG2_T",
    "VID_PCB_TEMP_T", "FPGA_PCB_TEMP_T",
)
_ANALOGUE_6_5_X = (
    "CCD3_OD_T", "CCD2_OD_T", "CCD1_OD_T", "COMM_RD_T", "CCD2_IG1_T", "CCD1_IG1_T",
    "CCD3_TEMP_T", "CCD2_TEMP_T", "CCD1_TEMP_T", "CCD3_IG1_T", "COMM_IG2_T",
    "VID_PCB_TEMP_T", "FPGA_PCB_TEMP_T",
)
_ANALOGUE_COMMON = (
    "CCD1_OD_B", "CCD2_OD_B", "CCD3_OD_B", "COMM_RD_B", "CCD2_IG1_B", "CCD3_IG1_B",
    "CCD1_TEMP_B", "CCD2_TEMP_B", "CCD3_TEMP_B", "CCD1_IG1_B", "COMM_IG2_B",
    "VID_PCB_TEMP_B", "FPGA_PCB_TEMP_B", "FPGA_BIAS_DD", "FPGA_BIAS_OG", "FPGA_BIAS_ID1",
    "FPGA_BIAS_ID2", "FPGA_BIAS_ID_T", "FPGA_BIAS_ID_B", "FPGA_VRCLK_V", "FPGA_10VA_P_V",
    "FPGA_VICLK_V", "FPGA_5VA_P_V", "FPGA_5VREF_V", "FPGA_VCCD_V", "FPGA_1V5VD_P_V",
    "FPGA_3V2_N_V", "FPGA_5VA_N_V", "RPSU_VCCD_V", "RPSU_VCLK_V", "RPSU_VAN_P_V",
    "RPSU_VAN_N_V", "RPSU_3V3VD_V", "RPSU_1V5VD_V", "RPSU_28V_PRI_V", "RPSU_TEMP1",
    "RPSU_VCCD_I", "RPSU_VCLK_I", "RPSU_VAN_P_I", "RPSU_VAN_N_I", "RPSU_3V3VD_I",
    "RPSU_1V5VD_I", "RPSU_28V_PRI_I", "RPSU_TEMP_2",
)
_FLAGS_6_3_0 = (
    "stTMRErrFlg", "hkTMRErrFlg", "spwTmTOFlg", "CDPUClkSt", "fpgaSpwErr", "V3v3ProtCnt",
    "V5ProtCnt", "VccdErrFlg", "VclkErrFlg", "VanErrFlg", "stRamErr", "hkRamErr",
    "ADC_BSY_ERR_CNT", "SPW_STATUS_REG",
)
_FLAGS_6_5_X = (
    "ProtOvRideFlg", "hkInvalidFlg", "SPI_Inh_n", "3v3ProtErr", "5vProtErr", "V3v3ProtCnt",
    "V5ProtCnt", "VccdErrFlg", "VclkErrFlg", "VanErrFlg", "hkTmErr", "spwTmTOFlg",
    "CDPUClkSt", "fpgaSpwErr", "hkRamErr", "ADC_BSY_ERR_CNT", "SPW_STATUS_REG", "Out_of_range",
)
_FLAGS_7_2_X = (
    "ProtOvRideFlg", "hkInvalidFlg", "SPI_Inh_n", "3v3ProtErr", "5vProtErr", "V3v3ProtCnt",
    "V5ProtCnt", "VccdErrFlg", "VclkErrFlg", "VanErrFlg", "dacExeErr", "hkTmErr",
    "spwTmTOFlg", "spwTmRspErrFlg", "spwTcPktErrFlg", "adcBsyErrFlg", "CDPUClkSt",
    "CDPUClkLost", "hkRamErr", "ADC_BSY_ERR_CNT", "SPW_STATUS_REG", "Out_of_range",
)
_FLAGS_7_5_X = (
    "ProtOvRideFlg", "hkInvalidFlg", "SPI_Inh_n", "3v3ProtErr", "5vProtErr", "V3v3ProtCnt",
    "V5ProtCnt", "VccdErrFlg", "VclkErrFlg", "VanErrFlg", "dacExeErr", "hkTmErr",
    "spwTmTOFlg", "spwTmRspErrFlg", "spwTcPktErrFlg", "adcBsyErrFlg", "CDPUClkSw",
    "hkRamErr", "ADC_BSY_ERR_CNT", "pixelToErr", "spwStatus", "spwTmPtypeFlag",
    "TwoCmdsErr", "SPW_STATUS_REG", "Out_of_range",
)

HK_COLUMNS: dict[str, tuple[str, ...]] = {
    "5.7.02": _KEYS_5_7_04,
    "5.7.04": _KEYS_5_7_04,
    "5.7.06": _KEYS_5_7_04,
    "5.7.07": _KEYS_5_7_09,
    "5.7.08": _KEYS_5_7_09,
    "5.7.09": _KEYS_5_7_09,
    "6.0.0": _KEYS_6_0_0,
    "6.1.0": _KEYS_6_0_0,
    "6.3.0": ("TimeStamp",) + _ANALOGUE_6_3_0 + _ANALOGUE_COMMON + _FLAGS_6_3_0,
    "6.5.X": ("TimeStamp",) + _ANALOGUE_6_5_X + _ANALOGUE_COMMON + _FLAGS_6_5_X,
    "7.2.X": ("TimeStamp",) + _ANALOGUE_6_5_X + _ANALOGUE_COMMON + _FLAGS_7_2_X,
    "7.5.X": ("TimeStamp",) + _ANALOGUE_6_5_X + _ANALOGUE_COMMON + _FLAGS_7_5_X,
}

DEFAULT_VERSION = "7.5.X"
TIMESTAMP_COLUMNS = ("TimeStamp", "HK_timestamp")
INTERNAL_KEYS: tuple[str, ...] = HK_COLUMNS["7.5.X"][1:]
_INTERNAL_SET = frozenset(INTERNAL_KEYS)

# Status flags, error counters and registers of every version: integers, written as such.
FLAG_KEYS = frozenset(_FLAGS_6_3_0 + _FLAGS_6_5_X + _FLAGS_7_2_X + _FLAGS_7_5_X)
# Registers ELVIS may print in hex (SPW_STATUS_REG reads 12192 = 0x2FA0 when healthy).
_REGISTER_KEYS = frozenset({"SPW_STATUS_REG"})

# 5.7 / 6.0 key -> 7.5.X key, only where the meaning is clear. Not mapped, kept as they are:
# per-CCD RD readings of 5.7 (one common RD from 6.0 on), the block-wide IG1 of 5.7,
# HK_IDH/HK_IDL (6.0 has them beside HK_ID1/HK_ID2), HK_VRClk_Lo_ROE, HK_3.3V_ROE,
# HK_VClk_ROE, and 6.3/7.2 flags that 7.5.X renamed or dropped.
KEY_ALIASES: dict[str, str] = {
    **{f"HK_OD_Top_CCD{n}": f"CCD{n}_OD_T" for n in (1, 2, 3)},
    **{f"HK_OD_Bottom_CCD{n}": f"CCD{n}_OD_B" for n in (1, 2, 3)},
    **{f"HK_IG1_Top_CCD{n}": f"CCD{n}_IG1_T" for n in (1, 2, 3)},
    **{f"HK_IG1_Bottom_CCD{n}": f"CCD{n}_IG1_B" for n in (1, 2, 3)},
    **{f"HK_temp_top_CCD{n}": f"CCD{n}_TEMP_T" for n in (1, 2, 3)},
    **{f"HK_temp_bottom_CCD{n}": f"CCD{n}_TEMP_B" for n in (1, 2, 3)},
    "HK_RD_top": "COMM_RD_T",
    "HK_RD_bot": "COMM_RD_B",
    "HK_IG2_top": "COMM_IG2_T",
    "HK_IG2_bot": "COMM_IG2_B",
    "HK_ID1": "FPGA_BIAS_ID1",
    "HK_ID2": "FPGA_BIAS_ID2",
    "HK_DD_bias": "FPGA_BIAS_DD",
    "HK_OG_bias": "FPGA_BIAS_OG",
    # ROE (FPGA board) supplies
    "HK_VCCD_ROE": "FPGA_VCCD_V",
    "HK_1.5V_ROE": "FPGA_1V5VD_P_V",
    "HK_5VA_pos_ROE": "FPGA_5VA_P_V",
    "HK_5V_ref_ROE": "FPGA_5VREF_V",
    "HK_10VA_ROE": "FPGA_10VA_P_V",
    "HK_5.2V_neg_ROE": "FPGA_5VA_N_V",
    "HK_3V_neg_ROE": "FPGA_3V2_N_V",
    "HK_VRclk_ROE": "FPGA_VRCLK_V",
    "HK_Viclk_ROE": "FPGA_VICLK_V",
    # board temperatures
    "Video_TOP": "VID_PCB_TEMP_T",
    "Video_BOT": "VID_PCB_TEMP_B",
    "HK_Video_TOP": "VID_PCB_TEMP_T",
    "HK_Video_BOT": "VID_PCB_TEMP_B",
    "HK_FPGA_TOP": "FPGA_PCB_TEMP_T",
    "HK_FPGA_BOT": "FPGA_PCB_TEMP_B",
    # RPSU
    "HK_VCCD_RPSU": "RPSU_VCCD_V",
    "HK_IVCCD_RPSU": "RPSU_VCCD_I",
    "HK_VCLK_RPSU": "RPSU_VCLK_V",
    "HK_IVCLK_RPSU": "RPSU_VCLK_I",
    "HK_VAN_pos_RPSU": "RPSU_VAN_P_V",
    "HK_I+VAN_RPSU": "RPSU_VAN_P_I",
    "HK_VAN_neg_RPSU": "RPSU_VAN_N_V",
    "HK_I-VAN_RPSU": "RPSU_VAN_N_I",
    "HK_3.3V_DIG_RPSU": "RPSU_3V3VD_V",
    "HK_I3.3V_DIG_RPSU": "RPSU_3V3VD_I",
    "HK_1.5V_DIG_RPSU": "RPSU_1V5VD_V",
    "HK_I1.5V_DIG_RPSU": "RPSU_1V5VD_I",
    "HK_28V_Pri_RPSU": "RPSU_28V_PRI_V",
    "HK_I28V_RPSU": "RPSU_28V_PRI_I",
    "HK_Temp1_RPSU": "RPSU_TEMP1",
    "HK_Temp2_RPSU": "RPSU_TEMP_2",
}
_KNOWN_NAMES = frozenset(
    name for names in HK_COLUMNS.values() for name in names[1:]
) | _INTERNAL_SET


def internal_key(name: str) -> str:
    """The 7.5.X name of an HK key of any version (its stripped self if none is clear)."""
    name = name.strip()
    return name if name in _INTERNAL_SET else KEY_ALIASES.get(name, name)


def detect_hk_version(names: Iterable[str]) -> str | None:
    """The ELVIS version whose key list best matches a header (newest among equals)."""
    header = [n.strip() for n in names if n.strip()]
    best, best_score = None, 0.0
    for version in reversed(HK_COLUMNS):
        candidate = list(HK_COLUMNS[version])
        if candidate == header:
            return version
        union = set(candidate) | set(header)
        score = len(set(candidate) & set(header)) / len(union) if header else 0.0
        if score > best_score:
            best, best_score = version, score
    return best if best_score >= 0.5 else None


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HKProblem:
    path: Path
    line: int | None  # None where the whole file is lost (empty, binary)
    key: str | None  # None for a problem with the whole line
    message: str  # full sentence, file and line included

    def __str__(self) -> str:
        return self.message


class _Clock:
    """Turns time stamps into datetimes.

    `DD-MM-YY_HH:MM:SS` carries its date. A bare `HH:MM:SS` (ELVIS 5.7) takes the date of the
    file name, anchored so the first sample lies within 12 h of the name's time, and rolls
    over to the next day when the clock goes back past midnight.
    """

    def __init__(self, named_at: datetime | None, last: datetime | None = None):
        self.named_at = named_at
        self.last = last

    def read(self, stamp: str) -> datetime:
        if "_" in stamp:
            day, clock = stamp.split("_", 1)
            dd, mm, yy = day.split("-")
            hh, mi, ss = clock.split(":")
            # Reuse the date-token parser so two-digit years follow one rule everywhere.
            when = parse_date_token(f"{dd:0>2}{mm:0>2}{yy:0>2}D{hh:0>2}{mi:0>2}{ss:0>2}T")
        else:
            when = self._on_day(time.fromisoformat(stamp))
        self.last = when
        return when

    def _on_day(self, clock: time) -> datetime:
        if self.last is not None:
            when = datetime.combine(self.last.date(), clock)
            if when < self.last - timedelta(hours=12):
                when += timedelta(days=1)  # past midnight
            return when
        if self.named_at is None:
            # No date known anywhere: a fixed placeholder day keeps times ordered.
            return datetime.combine(date(1900, 1, 1), clock)
        when = datetime.combine(self.named_at.date(), clock)
        if when - self.named_at > timedelta(hours=12):
            when -= timedelta(days=1)
        elif self.named_at - when > timedelta(hours=12):
            when += timedelta(days=1)
        return when


def _named_time(path: Path) -> datetime | None:
    try:
        return parse_hk_filename(path)[1]
    except ValueError:
        return None


class _Layout:
    """How one HK file's columns map onto internal keys."""

    def __init__(self, header: list[str]):
        self.header = header  # as in the file, for a follower to resume with
        names = [n.strip() for n in header]
        while names and not names[-1]:
            names.pop()
        self.names = names
        self.version = detect_hk_version(names)
        self.has_time = bool(names) and names[0] in TIMESTAMP_COLUMNS
        raw_keys = names[1:] if self.has_time else names
        self.raw_keys = raw_keys
        self.keys: list[str] = []
        for position, raw in enumerate(raw_keys, start=1):
            key = internal_key(raw) if raw else f"column_{position}"
            # Never let two columns land on one key: the second keeps its own name.
            self.keys.append(key if key not in self.keys else raw)


class _Parser:
    """Feeds an HK file's lines one at a time: the first non-blank is the header, the rest are
    samples (time, values); every problem is kept, with file, line and key."""

    def __init__(self, path: Path, last: datetime | None = None):
        self.path = path
        self.clock = _Clock(_named_time(path), last)
        self.layout: _Layout | None = None
        self.refused = False  # binary where the header should be: nothing of the file is read
        self.samples = 0
        self.finished = False
        self.problems: list[HKProblem] = []
        self._said: set[tuple[str, str | None]] = set()  # problems said once per file

    def start(self, header: list[str]) -> None:
        self.layout = _Layout(header)

    def _problem(self, line: int | None, key: str | None, what: str) -> None:
        where = f" line {line}" if line is not None else ""
        self.problems.append(HKProblem(self.path, line, key, f"{self.path.name}{where}: {what}"))

    def _once(self, kind: str, line: int, key: str | None, what: str) -> None:
        # an empty column or a binary tail repeats on every line: one warning says it
        if (kind, key) not in self._said:
            self._said.add((kind, key))
            self._problem(line, key, what)

    def feed(self, line: TextLine) -> tuple[datetime | None, list[float]] | None:
        """The sample of this line, or None (header, blank, or a line that cannot be used)."""
        if line.is_blank or self.refused:
            return None
        if is_binary(line.text):
            if self.layout is None:
                self.refused = True
                self._problem(None, None, f"binary data where the header of key names should be (line "
                                          f"{line.number}): not an HK table, the file is not read")
            else:
                self._once("binary", line.number, None, "binary data (non-printable bytes), not an HK row: "
                                                        "skipped (later binary lines of this file are not reported)")
            return None
        if self.layout is None:
            self.start(line.text.split("\t"))
            return None
        sample = self._parse(line)
        if sample is not None:
            self.samples += 1
        return sample

    def finish(self) -> None:
        """The file is closed: say so if it gave no sample."""
        if self.finished or self.refused:
            return
        self.finished = True
        if self.layout is None:
            self._problem(None, None, "empty file (no header, no sample): no HK for this exposure")
        elif self.samples == 0:
            self._problem(None, None, "a header but no sample: no HK for this exposure")

    def _parse(self, line: TextLine) -> tuple[datetime | None, list[float]] | None:
        layout = self.layout
        assert layout is not None
        fields = split_fields(line.text, len(layout.names))
        if fields is None:
            found = len(line.text.split("\t"))
            self._problem(line.number, None, f"expected {len(layout.names)} tab-separated fields, found {found}")
            return None
        when = None
        if layout.has_time:
            stamp, fields = fields[0], fields[1:]
            try:
                when = self.clock.read(stamp)
            except ValueError:
                self._problem(line.number, layout.names[0],
                              f"time stamp {shown(stamp)} is not DD-MM-YY_HH:MM:SS or HH:MM:SS")
        try:  # a row of plain finite numbers (almost every row): parsed in one go
            values = [float(text) for text in fields]
            if all(map(math.isfinite, values)):
                return when, values
        except ValueError:  # an empty cell, a register in hex, a bad reading: cell by cell, said
            pass
        values = [self._number(line.number, key, text) for key, text in zip(layout.keys, fields)]
        return when, values

    def _number(self, line: int, key: str, text: str) -> float:
        value = _reading(key, text)
        if value is None:
            self._problem(line, key, f"key {shown(key)} expects a number, found {shown(text)}")
            return math.nan
        if not math.isfinite(value):
            what = "is empty" if text == "" else f"reads {shown(text)}"
            self._once("gap", line, key, f"key {shown(key)} {what}: no reading (later gaps of this key "
                                         f"in this file are not reported)")
            return math.nan
        return value


def _reading(key: str, text: str) -> float | None:
    """The number in a cell (NaN for an empty one), None if it is not a number."""
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        pass
    if key in _REGISTER_KEYS:
        try:
            return float(int(text, 16))
        except ValueError:
            pass
    return None


# --------------------------------------------------------------------------------------------
# Whole-file reading
# --------------------------------------------------------------------------------------------


@dataclass
class HKFile:
    """One per-exposure HK file: sample times and one float array per (internal) key."""

    path: Path
    version: str | None
    keys: list[str]
    times: list[datetime | None]  # None where a time stamp could not be read
    values: dict[str, np.ndarray]
    problems: list[HKProblem] = field(default_factory=list)
    pending: str | None = None

    def __len__(self) -> int:
        return len(self.times)

    def stats(self, key: str) -> tuple[float, float, float, float]:
        """(mean, std, min, max) of a key over the file, ignoring NaN; all NaN if no data."""
        data = self.values[key]
        finite = data[~np.isnan(data)]
        if finite.size == 0:
            return (math.nan,) * 4
        return (float(finite.mean()), float(finite.std()), float(finite.min()), float(finite.max()))

    def mean(self) -> dict[str, float]:
        """The per-exposure value of every key: its mean over the file."""
        return {key: self.stats(key)[0] for key in self.keys}


def read_hk(path: str | os.PathLike[str], *, complete: bool = True) -> HKFile:
    """Read an HK file.

    Bad cells become NaN and are listed in `problems` (file, line, key); lines with a wrong
    field count are skipped and listed; a file with no sample says so. With `complete=False` an
    unterminated last line (ELVIS still writing) is held back in `pending`.
    """
    path = Path(path)
    lines, pending = read_text_lines(path, final=complete)
    parser = _Parser(path)
    times: list[datetime | None] = []
    samples: list[list[float]] = []
    for line in lines:
        sample = parser.feed(line)
        if sample is not None:
            times.append(sample[0])
            samples.append(sample[1])
    if complete:
        parser.finish()
    layout = parser.layout
    if layout is None:
        return HKFile(path, None, [], [], {}, parser.problems, pending)
    table = np.array(samples, dtype=float).reshape(len(samples), len(layout.keys))
    values = {key: table[:, i].copy() for i, key in enumerate(layout.keys)}
    return HKFile(path, layout.version, list(layout.keys), times, values, parser.problems, pending)


# --------------------------------------------------------------------------------------------
# Following a growing file
# --------------------------------------------------------------------------------------------


class HKFollower(TableFollower):
    """Reads only the HK rows appended since the last call (textfollow.TextFollower; no re-parsing).

    `read_new()` returns one dict per new row: `line`, `time` and every key. A partial last
    line waits until terminated, unless `read_new(final=True)` says the file is closed (then a
    file with no sample is also said in `problems`). A truncated or replaced file is read again
    from its start. `state()` / `from_state()` let a restarted monitor resume.
    """

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__(path)
        self._parser = _Parser(self.path)

    @property
    def version(self) -> str | None:
        return self._parser.layout.version if self._parser.layout else None

    @property
    def keys(self) -> list[str]:
        return list(self._parser.layout.keys) if self._parser.layout else []

    @property
    def problems(self) -> list[HKProblem]:
        return self._parser.problems

    def read_new(self, *, final: bool = False) -> list[dict[str, Any]]:
        chunk = self._text.read_chunk(final=final)
        if chunk.restarted:
            self._parser = _Parser(self.path)
        rows: list[dict[str, Any]] = []
        for line in chunk.lines():
            sample = self._parser.feed(line)
            if sample is not None:
                when, values = sample
                rows.append({"line": line.number, "time": when, **dict(zip(self.keys, values))})
        if final and chunk.at_end:
            self._parser.finish()
        return rows

    def state(self) -> dict[str, Any]:
        last = self._parser.clock.last
        return {
            "path": str(self.path),
            **self._text.state(),
            "header": self._parser.layout.header if self._parser.layout else None,
            "version": self.version,
            "samples": self._parser.samples,
            "last_time": last.isoformat() if last else None,  # for HH:MM:SS midnight roll-over
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> HKFollower:
        follower = cls(path or state["path"])
        follower._resume(state)
        if state.get("header") is not None:
            last = state.get("last_time")
            follower._parser = _Parser(follower.path, datetime.fromisoformat(last) if last else None)
            follower._parser.start(list(state["header"]))
            follower._parser.samples = int(state.get("samples", max(0, follower.line - 1)))
        return follower


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

_EOL = "\r\n"  # the lab's ELVIS runs on Windows


def _columns_for(version: str) -> tuple[str, ...]:
    try:
        return HK_COLUMNS[version]
    except KeyError:
        raise ValueError(f"unknown ELVIS version {version!r}; known: {', '.join(HK_COLUMNS)}") from None


def format_hk_header(version: str = DEFAULT_VERSION) -> str:
    return "\t".join(_columns_for(version)) + _EOL


def _format_stamp(when: datetime, column: str) -> str:
    # ELVIS 5.7 stamped only the time of day.
    return when.strftime("%H:%M:%S" if column == "HK_timestamp" else "%d-%m-%y_%H:%M:%S")


def _format_reading(key: str, value: float) -> str:
    if math.isnan(value):
        return "nan"
    if key in FLAG_KEYS and float(value).is_integer():
        return str(int(value))
    return np.format_float_positional(value, trim="0")


def format_hk_rows(
    times: Sequence[datetime],
    values: Mapping[str, Any],
    version: str = DEFAULT_VERSION,
) -> str:
    """Lines for samples at `times`; `values` maps key names (internal or of any version) to
    one value per time. Keys the version has but `values` lacks are left empty; keys it does
    not have are ignored; names no version knows are refused (a typo loses data silently)."""
    columns = _columns_for(version)
    stamp_column, file_keys = columns[0], columns[1:]
    unknown = sorted(set(values) - _KNOWN_NAMES)
    if unknown:
        raise ValueError(f"not HK keys of any ELVIS version: {', '.join(unknown)}")
    by_key = {internal_key(name): data for name, data in values.items()}
    sources = [internal_key(name) for name in file_keys]
    arrays: list[np.ndarray | None] = []
    for source in sources:
        data = by_key.get(source)
        if data is None:
            arrays.append(None)
            continue
        array = np.asarray(data, dtype=float).reshape(-1)
        if array.size == 1 and len(times) != 1:
            array = np.full(len(times), array[0])  # a constant for every sample
        if array.size != len(times):
            raise ValueError(f"key '{source}' has {array.size} values for {len(times)} times")
        arrays.append(array)
    out = []
    for i, when in enumerate(times):
        cells = [_format_stamp(when, stamp_column)]
        for source, array in zip(sources, arrays):
            cells.append("" if array is None else _format_reading(source, array[i]))
        out.append("\t".join(cells) + _EOL)
    return "".join(out)


def write_hk(
    path: str | os.PathLike[str],
    times: Sequence[datetime],
    values: Mapping[str, Any],
    version: str = DEFAULT_VERSION,
) -> Path:
    path = Path(path)
    text = format_hk_header(version) + format_hk_rows(times, values, version)
    path.write_bytes(text.encode("utf-8"))
    return path


def append_hk_rows(
    path: str | os.PathLike[str],
    times: Sequence[datetime],
    values: Mapping[str, Any],
    version: str = DEFAULT_VERSION,
) -> Path:
    """Append samples; a new (or empty) file gets the header first."""
    path = Path(path)
    existing = path.read_bytes() if path.exists() else b""
    text = format_hk_rows(times, values, version)
    if not existing.strip():
        text = format_hk_header(version) + text
    elif not existing.endswith(b"\n"):
        text = _EOL + text  # never glue a row onto a line left unterminated
    with open(path, "ab") as handle:
        handle.write(text.encode("utf-8"))
    return path
