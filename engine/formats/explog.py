"""ELVIS exposure log (`EXP_LOG_<DDMMYY>.txt`): read it, follow it while it grows, write it.

The log is a tab-separated table: one header line of column names, then one line per CCD per
exposure (3 per OBSID), appended as exposures complete. Every ELVIS version names the columns
differently; rows always come back under one internal set, the ELVIS 7.5.X names
(`INTERNAL_COLUMNS`), whatever version wrote the file.

Quirks of real logs tolerated here: CRLF or LF, a trailing tab on every line, header names with
stray spaces (`Vstart `, `TOI _pump`), blank lines, a UTF-8 byte-order mark, and a last line
still being written. Refused (a problem naming file and line): an ObsID that is not a plain
whole number, and a second row for an OBSID/CCD already logged (the first one is kept).
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from .textfollow import TableFollower, read_text_lines
from .textlines import TextLine, shown, split_fields, split_lines

# --------------------------------------------------------------------------------------------
# Column lists per ELVIS version (as ELVIS writes them, in file order)
# --------------------------------------------------------------------------------------------

_COLUMNS_5_7_02 = (
    "ObsID", "File_name", "CCD", "ROE", "DATE", "PROGRAM", "TEST", "CCD_SN", "BUNIT",
    "Operator", "Lab_ver", "Con_file", "Exptime", "N_P_high", "Chrg_inj", "On_cycle",
    "Off_cycl", "Rpeat_cy", "pls_leng", "pls_del", "Trappump", "TP_Ser_S", "TP_Ver_S",
    "TP_DW_V", "TP_DW_H", "TOI_flu", "TOI _pump", "TOI_read", "Invflshp", "Invflush",
    "Flushes", "Vstart", "Vend", "Lim_scan", "Ovrscn_H", "Ovrscn_V", "V_clocks", "S_clocks",
    "CLK_ROE1", "CLK_ROE2", "ROE1_On", "ROE2_On", "FPGA_ver", "EGSE_ver", "M_Steps",
    "M_St_Sze", "Wavelength", "Lght_int", "Chmb_pre", "CCD_SNX", "ROE_SN", "CalScrpt",
    "R1CCD1TT", "R1CCD1TB", "R1CCD2TT", "R1CCD2TB", "R1CCD3TT", "R1CCD3TB",
    "R2CCD1TT", "R2CCD1TB", "R2CCD2TT", "R2CCD2TB", "R2CCD3TT", "R2CCD3TB",
    "IDL_V", "IDH_V", "IG1_V", "IG2_V", "ODCCD1_V", "RDCCD1_V", "ODCCD2_V", "RDCCD2_V",
    "ODCCD3_V", "RDCCD3_V",
)

_COLUMNS_5_7_04 = (
    "ObsID", "File_name", "CCD", "ROE", "DATE", "PROGRAM", "TEST", "CCD1_SN", "CCD2_SN",
    "CCD3_SN", "BUNIT", "Operator", "Lab_ver", "Con_file", "Exptime", "Flsh-Rdout_e_time",
    "C.Inj-Rdout_e_time", "N_P_high", "Chrg_inj", "On_cycle", "Off_cycl", "Rpeat_cy",
    "pls_leng", "pls_del", "Trappump", "TP_Ser_S", "TP_Ver_S", "TP_DW_V", "TP_DW_H",
    "TOI_flu", "TOI_pump", "TOI_read", "Invflshp", "Invflush", "Flushes", "Vstart", "Vend",
    "Lim_scan", "Ovrscn_H", "Ovrscn_V", "V_clocks", "S_clocks", "CLK_ROE1", "CLK_ROE2",
    "ROE1_On", "ROE2_On", "FPGA_ver", "EGSE_ver", "M_Steps", "M_St_Sze", "Wavelength",
    "Lght_int", "Chmb_pre", "ROE_SN", "CalScrpt",
    "R1CCD1TT", "R1CCD1TB", "R1CCD2TT", "R1CCD2TB", "R1CCD3TT", "R1CCD3TB",
    "R2CCD1TT", "R2CCD1TB", "R2CCD2TT", "R2CCD2TB", "R2CCD3TT", "R2CCD3TB",
    "IDL_V", "IDH_V", "IG1_V", "IG2_V", "ODCCD1_V", "RDCCD1_V", "ODCCD2_V", "RDCCD2_V",
    "ODCCD3_V", "RDCCD3_V",
)

_COLUMNS_6_0_0 = (
    "ObsID", "File_name", "CCD", "ROE", "DATE", "PROGRAM", "TEST", "CCD1_SN", "CCD2_SN",
    "CCD3_SN", "BUNIT", "Operator", "Lab_ver", "Con_file", "Exptime", "Flsh-Rdout_e_time",
    "C.Inj-Rdout_e_time", "N_P_high", "Chrg_inj", "On_cycle", "Off_cycl", "pls_leng",
    "pls_del", "SerRdDel", "Trappump", "TP_Ser_S", "TP_Ver_S", "TP_DW_V", "TP_DW_H",
    "TOI_flsh", "TOI_pump", "TOI_read", "TOI_CInj", "Invflshp", "Invflush", "Flushes",
    "Vstart", "Vend", "Ovrscn_H", "CLK_ROE", "CnvStart", "SumWell", "IniSweep", "SPW_clk",
    "FPGA_ver", "EGSE_ver", "M_Steps", "M_St_Sze", "Wavelength", "Mirr_pos", "Chmb_pre",
    "RPSU_SN", "ROE_SN", "CalScrpt",
    "R1CCD1TT", "R1CCD1TB", "R1CCD2TT", "R1CCD2TB", "R1CCD3TT", "R1CCD3TB",
    "IDL_V", "IDH_V", "IG1_T1_V", "IG1_T2_V", "IG1_T3_V", "IG1_B1_V", "IG1_B2_V", "IG1_B3_V",
    "IG2_T_V", "IG2_B_V", "OD_T1_V", "OD_T2_V", "OD_T3_V", "OD_B1_V", "OD_B2_V", "OD_B3_V",
    "RD_T_V", "RD_B_V",
)

_COLUMNS_6_3_0 = (
    "ObsID", "File_name", "CCD", "ROE", "date", "program", "test", "calscrpt",
    "sn_ccd1", "sn_ccd2", "sn_ccd3", "sn_roe", "sn_rpsu", "BUNIT", "operator", "con_file",
    "exptime", "fl_rdout", "ci_rdout", "IPHI", "vstart", "vend", "rdmode", "flushes",
    "siflsh", "siflsh_p", "swellw", "swelldly", "inisweep", "spw_clk", "chinj", "chinj_on",
    "chinj_of", "id_wid", "id_dly", "chin_dly", "v_tpump", "s_tpump", "v_tpmod", "s_tpmod",
    "v_tp_cnt", "s_tp_cnt", "dwell_v", "dwell_s", "toi_fl", "toi_tp", "toi_ro", "toi_ch",
    "fpga_ver", "egse_ver", "motr_on", "motr_cnt", "motr_siz", "source", "wave", "mirr_on",
    "mirr_pos", "R1C1_TT", "R1C1_TB", "R1C2_TT", "R1C2_TB", "R1C3_TT", "R1C3_TB", "IDL",
    "IDH", "IG1_1_T", "IG1_2_T", "IG1_3_T", "IG1_1_B", "IG1_2_B", "IG1_3_B", "IG2_T", "IG2_B",
    "OD_1_T", "OD_2_T", "OD_3_T", "OD_1_B", "OD_2_B", "OD_3_B", "RD_T", "RD_B",
)

# 6.5.X renamed four script keys; 7.2.X and 7.5.X kept 6.5.X's list.
_COLUMNS_7_5_X = tuple(
    {"spw_clk": "cdpu_clk", "v_tpmod": "v_tp_mod", "s_tpmod": "s_tp_mod", "motr_on": "motr"}.get(
        name, name
    )
    for name in _COLUMNS_6_3_0
)

EXPLOG_COLUMNS: dict[str, tuple[str, ...]] = {
    "5.7.02": _COLUMNS_5_7_02,
    "5.7.04": _COLUMNS_5_7_04,
    "5.7.09": _COLUMNS_5_7_04,
    "6.0.0": _COLUMNS_6_0_0,
    "6.1.0": _COLUMNS_6_0_0,
    "6.3.0": _COLUMNS_6_3_0,
    "6.5.X": _COLUMNS_7_5_X,
    "7.2.X": _COLUMNS_7_5_X,
    "7.5.X": _COLUMNS_7_5_X,
}

DEFAULT_VERSION = "7.5.X"
INTERNAL_COLUMNS: tuple[str, ...] = _COLUMNS_7_5_X
_INTERNAL_SET = frozenset(INTERNAL_COLUMNS)

# Older name -> internal name(s). A single old commanded voltage that several 7.5.X columns
# split into (IG1_V, ODCCDn_V, ...) fills each of them. Names absent here and from
# INTERNAL_COLUMNS are kept under their stripped original name.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    # identification and bookkeeping (5.7.x, 6.0.0)
    "DATE": ("date",),
    "PROGRAM": ("program",),
    "TEST": ("test",),
    "CCD1_SN": ("sn_ccd1",),
    "CCD2_SN": ("sn_ccd2",),
    "CCD3_SN": ("sn_ccd3",),
    "ROE_SN": ("sn_roe",),
    "RPSU_SN": ("sn_rpsu",),
    "Operator": ("operator",),
    "Con_file": ("con_file",),
    "CalScrpt": ("calscrpt",),
    "FPGA_ver": ("fpga_ver",),
    "EGSE_ver": ("egse_ver",),
    # exposure, readout and flushing
    "Exptime": ("exptime",),
    "Flsh-Rdout_e_time": ("fl_rdout",),
    "C.Inj-Rdout_e_time": ("ci_rdout",),
    "N_P_high": ("IPHI",),
    "Vstart": ("vstart",),
    "Vend": ("vend",),
    "Flushes": ("flushes",),
    "Invflush": ("siflsh",),
    "Invflshp": ("siflsh_p",),
    "IniSweep": ("inisweep",),
    "SPW_clk": ("cdpu_clk",),
    # charge injection
    "Chrg_inj": ("chinj",),
    "On_cycle": ("chinj_on",),
    "Off_cycl": ("chinj_of",),
    "pls_leng": ("id_wid",),
    "pls_del": ("id_dly",),
    # trap pumping
    "TP_Ver_S": ("v_tp_cnt",),
    "TP_Ser_S": ("s_tp_cnt",),
    "TP_DW_V": ("dwell_v",),
    "TP_DW_H": ("dwell_s",),
    # times of integration (the 5.7.02 header spells one "TOI _pump": names are compared
    # without whitespace, so "TOI_pump" covers it)
    "TOI_flu": ("toi_fl",),
    "TOI_flsh": ("toi_fl",),
    "TOI_pump": ("toi_tp",),
    "TOI_read": ("toi_ro",),
    "TOI_CInj": ("toi_ch",),
    # optical stimulus
    "M_Steps": ("motr_cnt",),
    "M_St_Sze": ("motr_siz",),
    "Wavelength": ("wave",),
    "Mirr_pos": ("mirr_pos",),
    # CCD temperatures (ROE1 only; the R2 sensors of 5.7.x have no 7.5.X column)
    "R1CCD1TT": ("R1C1_TT",),
    "R1CCD1TB": ("R1C1_TB",),
    "R1CCD2TT": ("R1C2_TT",),
    "R1CCD2TB": ("R1C2_TB",),
    "R1CCD3TT": ("R1C3_TT",),
    "R1CCD3TB": ("R1C3_TB",),
    # commanded voltages, 5.7.x: one IG1/IG2 for the block, OD per CCD, RD per CCD
    "IDL_V": ("IDL",),
    "IDH_V": ("IDH",),
    "IG1_V": ("IG1_1_T", "IG1_2_T", "IG1_3_T", "IG1_1_B", "IG1_2_B", "IG1_3_B"),
    "IG2_V": ("IG2_T", "IG2_B"),
    "ODCCD1_V": ("OD_1_T", "OD_1_B"),
    "ODCCD2_V": ("OD_2_T", "OD_2_B"),
    "ODCCD3_V": ("OD_3_T", "OD_3_B"),
    # RD is common to the block from 6.0 on; CCD1's setting stands for it, RDCCD2/3_V are kept
    # under their own names so a disagreement stays visible.
    "RDCCD1_V": ("RD_T", "RD_B"),
    # commanded voltages, 6.0.0/6.1.0: per CCD and half
    "IG1_T1_V": ("IG1_1_T",),
    "IG1_T2_V": ("IG1_2_T",),
    "IG1_T3_V": ("IG1_3_T",),
    "IG1_B1_V": ("IG1_1_B",),
    "IG1_B2_V": ("IG1_2_B",),
    "IG1_B3_V": ("IG1_3_B",),
    "IG2_T_V": ("IG2_T",),
    "IG2_B_V": ("IG2_B",),
    "OD_T1_V": ("OD_1_T",),
    "OD_T2_V": ("OD_2_T",),
    "OD_T3_V": ("OD_3_T",),
    "OD_B1_V": ("OD_1_B",),
    "OD_B2_V": ("OD_2_B",),
    "OD_B3_V": ("OD_3_B",),
    "RD_T_V": ("RD_T",),
    "RD_B_V": ("RD_B",),
    # 6.3.0 names renamed in 6.5.X
    "spw_clk": ("cdpu_clk",),
    "v_tpmod": ("v_tp_mod",),
    "s_tpmod": ("s_tp_mod",),
    "motr_on": ("motr",),
}

# --------------------------------------------------------------------------------------------
# Types (internal names, plus old names that have no internal counterpart); str otherwise
# --------------------------------------------------------------------------------------------

_INT_COLUMNS = (
    "ObsID", "vstart", "vend", "flushes", "siflsh", "inisweep", "cdpu_clk", "chinj",
    "chinj_on", "chinj_of", "chin_dly", "v_tpump", "s_tpump", "v_tp_mod", "s_tp_mod",
    "v_tp_cnt", "s_tp_cnt", "toi_fl", "toi_tp", "toi_ro", "toi_ch", "motr", "motr_cnt",
    "wave", "mirr_on",
    # old names kept as they are
    "Rpeat_cy", "SerRdDel", "Lim_scan", "Ovrscn_H", "Ovrscn_V", "ROE1_On", "ROE2_On",
    "CnvStart", "SumWell",
)
_FLOAT_COLUMNS = (
    "exptime", "fl_rdout", "ci_rdout", "siflsh_p", "swellw", "swelldly", "id_wid", "id_dly",
    "dwell_v", "dwell_s", "motr_siz", "mirr_pos",
    "R1C1_TT", "R1C1_TB", "R1C2_TT", "R1C2_TB", "R1C3_TT", "R1C3_TB",
    "IDL", "IDH", "IG1_1_T", "IG1_2_T", "IG1_3_T", "IG1_1_B", "IG1_2_B", "IG1_3_B",
    "IG2_T", "IG2_B", "OD_1_T", "OD_2_T", "OD_3_T", "OD_1_B", "OD_2_B", "OD_3_B", "RD_T", "RD_B",
    # old names kept as they are
    "Lght_int", "Chmb_pre", "R2CCD1TT", "R2CCD1TB", "R2CCD2TT", "R2CCD2TB", "R2CCD3TT",
    "R2CCD3TB", "RDCCD2_V", "RDCCD3_V",
)
COLUMN_TYPES: dict[str, type] = {
    **{name: int for name in _INT_COLUMNS},
    **{name: float for name in _FLOAT_COLUMNS},
}


def column_type(name: str) -> type:
    """int, float or str for an internal (or kept old) column name."""
    return COLUMN_TYPES.get(name, str)


def internal_names(name: str) -> tuple[str, ...]:
    """The internal column(s) an ELVIS column name stands for (itself if unknown)."""
    bare = _bare(name)
    if bare in _INTERNAL_SET:
        return (bare,)
    return COLUMN_ALIASES.get(bare, (name.strip(),))


def _bare(name: str) -> str:
    # Header names carry stray spaces, even inside ("TOI _pump").
    return "".join(name.split())


def detect_version(names: Iterable[str]) -> str | None:
    """The ELVIS version whose column list best matches these header names.

    Exact matches win; otherwise the closest list by overlap (the real 5.7.05 sample matches
    none exactly). Where versions share a list the newest is named. None if nothing is close.
    """
    header = [_bare(n) for n in names if n.strip()]
    best, best_score = None, 0.0
    for version in reversed(EXPLOG_COLUMNS):
        candidate = [_bare(n) for n in EXPLOG_COLUMNS[version]]
        if candidate == header:
            return version
        common = len(set(candidate) & set(header))
        score = common / len(set(candidate) | set(header)) if header else 0.0
        if score > best_score:
            best, best_score = version, score
    return best if best_score >= 0.5 else None


# --------------------------------------------------------------------------------------------
# Parsing one log's lines
# --------------------------------------------------------------------------------------------


class ExpLogError(ValueError):
    """A malformed EXP_LOG line; the message names the file and the line."""

    def __init__(self, message: str, path: Path | None = None, line: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line


@dataclass(frozen=True)
class ExpLogProblem:
    path: Path
    line: int
    message: str  # full sentence, file and line included

    def __str__(self) -> str:
        return self.message


class _LineError(ValueError):
    """What is wrong with a line, before the file and line number are added."""


@dataclass(frozen=True)
class _Column:
    name: str  # as in the header, stripped
    targets: tuple[str, ...]  # internal name(s) it fills
    kind: type


class _Schema:
    """How the fields of one log's lines map onto internal columns."""

    def __init__(self, header: list[str], version: str | None = None):
        self.header = header
        if version is not None:
            if version not in EXPLOG_COLUMNS:
                raise ValueError(
                    f"unknown ELVIS version {version!r}; known: {', '.join(EXPLOG_COLUMNS)}"
                )
            # An explicit version names the fields by position, whatever the header says.
            names = list(EXPLOG_COLUMNS[version])
            self.version: str | None = version
        else:
            names = [n.strip() for n in header]
            while names and not names[-1]:
                names.pop()
            self.version = detect_version(names)
        self.fields = []
        for position, name in enumerate(names, start=1):
            name = name or f"column_{position}"  # an unnamed column in the middle of the header
            targets = internal_names(name)
            self.fields.append(_Column(name, targets, column_type(targets[0])))
        filled = {t for col in self.fields for t in col.targets}
        extras = [t for col in self.fields for t in col.targets if t not in _INTERNAL_SET]
        self.columns = [c for c in INTERNAL_COLUMNS if c in filled] + list(dict.fromkeys(extras))

    def header_mismatch(self) -> str | None:
        names = [h.strip() for h in self.header]
        while names and not names[-1]:
            names.pop()
        if len(names) != len(self.fields):
            return (
                f"header has {len(names)} names, ELVIS {self.version} logs have "
                f"{len(self.fields)} columns"
            )
        return None

    def parse(self, text: str) -> dict[str, Any]:
        fields = split_fields(text, len(self.fields))
        if fields is None:
            found = len(text.split("\t"))
            raise _LineError(f"expected {len(self.fields)} tab-separated fields, found {found}")
        row: dict[str, Any] = dict.fromkeys(INTERNAL_COLUMNS)
        for column, raw in zip(self.fields, fields):
            value = _convert(raw, column)
            if "ObsID" in column.targets and value is not None and not _OBSID.fullmatch(raw):
                # "1e9" or "-3" pass as integers, and would shift the data set
                raise _LineError(f"column {shown(column.name)} expects an OBSID, a whole number of "
                                 f"digits such as 1234, found {shown(raw)}")
            for target in column.targets:
                row[target] = value
        if row["ObsID"] is None:
            raise _LineError("column 'ObsID' is empty")
        return row


_OBSID = re.compile(r"[0-9]+")


def _convert(raw: str, column: _Column) -> Any:
    if column.kind is str:
        return raw
    if raw == "":
        return None  # a blank cell is a missing value, not a malformed line
    try:
        number = float(raw)
    except ValueError:
        raise _LineError(f"column {shown(column.name)} expects a number, found {shown(raw)}") from None
    if column.kind is float:
        return number
    if not number.is_integer():
        raise _LineError(f"column {shown(column.name)} expects an integer, found {shown(raw)}")
    return int(number)


ErrorMode = Literal["raise", "collect"]


def _check_errors_mode(errors: str) -> None:
    if errors not in ("raise", "collect"):
        raise ValueError(f"errors must be 'raise' or 'collect', not {errors!r}")


# --------------------------------------------------------------------------------------------
# Whole-file reading
# --------------------------------------------------------------------------------------------


@dataclass
class ExpLog:
    """One EXP_LOG file, rows under the internal (7.5.X) column names.

    Each row holds every internal column (None where this log's version has no such column),
    any old column kept under its own name, and `line`, its 1-based line number in the file.
    `columns` lists the columns this log actually filled: internal ones in 7.5.X order, then
    the kept old ones.
    """

    path: Path
    version: str | None
    columns: list[str]
    rows: list[dict[str, Any]]
    pending: str | None = None
    problems: list[ExpLogProblem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def obsids(self) -> list[int]:
        return sorted({row["ObsID"] for row in self.rows})

    def rows_for_test(self, name: str) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["test"] == name]

    def tests(self) -> list[str]:
        """Test names in order of first appearance."""
        return list(dict.fromkeys(row["test"] for row in self.rows))

    def frames_per_test(self) -> dict[str, float]:
        """Frames acquired per test name: its rows over the number of CCDs in the log.

        A resubmitted test repeats its name, so this counts all its runs together.
        """
        n_ccds = len({row["CCD"] for row in self.rows}) or 1
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row["test"]] = counts.get(row["test"], 0) + 1
        return {test: count / n_ccds for test, count in counts.items()}


def read_explog(
    path: str | os.PathLike[str],
    *,
    complete: bool = True,
    errors: ErrorMode = "raise",
    version: str | None = None,
) -> ExpLog:
    """Read an EXP_LOG as a whole (a log still growing is followed with ExpLogFollower).

    The file is taken as closed: a last line without its terminator is read as a row. With
    `complete=False` it is held back in `pending` (ELVIS may still be writing it). A malformed
    line raises ExpLogError, or with `errors="collect"` is skipped and listed in `problems`.
    `version` forces the column list (fields are then named by position); by default the
    version is detected from the header.
    """
    _check_errors_mode(errors)
    path = Path(path)
    lines, pending = read_text_lines(path, final=complete)
    parser = _Parser(path, version, errors)
    rows = [row for line in lines if (row := parser.feed(line)) is not None]
    schema = parser.schema
    return ExpLog(
        path=path,
        version=schema.version if schema else version,
        columns=schema.columns if schema else [],
        rows=rows,
        pending=pending,
        problems=parser.problems,
    )


class _Parser:
    """Feeds lines one at a time: the first non-blank is the header, the rest become rows."""

    def __init__(self, path: Path, version: str | None, errors: str):
        self.path = path
        self.version = version
        self.errors = errors
        self.schema: _Schema | None = None
        self.problems: list[ExpLogProblem] = []
        self.logged: dict[tuple[Any, Any], int] = {}  # (ObsID, CCD) -> line of its row

    def start(self, header: list[str], line_number: int) -> None:
        self.schema = _Schema(header, self.version)
        mismatch = self.schema.header_mismatch() if self.version else None
        if mismatch:
            # A header that disagrees with a forced version means every line would be misread.
            self.schema = None
            raise ExpLogError(f"{self.path.name} line {line_number}: {mismatch}", self.path, line_number)

    def feed(self, line: TextLine) -> dict[str, Any] | None:
        """The row for this line, or None (header, blank, or a collected bad line)."""
        if line.is_blank:
            return None
        if self.schema is None:
            self.start(line.text.split("\t"), line.number)
            return None
        try:
            row = self.schema.parse(line.text)
            key = (row["ObsID"], row["CCD"])
            first = self.logged.setdefault(key, line.number)
            if first != line.number:
                # a re-sent row must not replace the one the frames were taken with
                raise _LineError(f"ObsID {key[0]} {shown(str(key[1]))} was already logged on line {first}: "
                                 f"this row is ignored, the first one kept")
        except _LineError as why:
            message = f"{self.path.name} line {line.number}: {why}"
            if self.errors == "raise":
                raise ExpLogError(message, self.path, line.number) from None
            self.problems.append(ExpLogProblem(self.path, line.number, message))
            return None
        row["line"] = line.number
        return row


# --------------------------------------------------------------------------------------------
# Following a growing log
# --------------------------------------------------------------------------------------------


class ExpLogFollower(TableFollower):
    """Reads only what ELVIS appended since the last call (textfollow.TextFollower); never re-parses.

    A partial last line waits until terminated, unless `read_new(final=True)` says the log is
    closed. Bad lines go to `problems` (errors="collect", the default: a monitor must keep going)
    or raise ExpLogError once, after the good rows before them were returned (errors="raise").
    A truncated or replaced log is read again from its start (`restarted` says so after that
    read). `state()` / `from_state()` let a restarted monitor resume.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        version: str | None = None,
        errors: ErrorMode = "collect",
    ):
        _check_errors_mode(errors)
        super().__init__(path)
        self.errors = errors
        self.restarted = False
        self._parser = _Parser(self.path, version, errors)

    @property
    def version(self) -> str | None:
        return self._parser.schema.version if self._parser.schema else self._parser.version

    @property
    def problems(self) -> list[ExpLogProblem]:
        """Bad lines skipped so far (errors="collect")."""
        return self._parser.problems

    @property
    def columns(self) -> list[str]:
        return self._parser.schema.columns if self._parser.schema else []

    def read_new(self, *, final: bool = False) -> list[dict[str, Any]]:
        chunk = self._text.read_chunk(final=final)
        self.restarted = chunk.restarted
        if chunk.restarted:
            self._parser = _Parser(self.path, self._parser.version, self.errors)
        lines = chunk.lines()
        rows: list[dict[str, Any]] = []
        for position, line in enumerate(lines):
            try:
                row = self._parser.feed(line)
            except ExpLogError:
                if rows or self._parser.schema is None:
                    self._text.unread(line)  # read again next time: it raises then (a refused header, always)
                    if rows:
                        return rows
                elif position + 1 < len(lines):
                    self._text.unread(lines[position + 1])  # the bad row is passed over once reported
                raise
            if row is not None:
                rows.append(row)
        return rows

    def state(self) -> dict[str, Any]:
        """A small JSON-able dict to resume from."""
        return {
            "path": str(self.path),
            **self._text.state(),
            "header": self._parser.schema.header if self._parser.schema else None,
            "version": self._parser.version,  # only an explicitly forced version
            "detected_version": self.version,
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        path: str | os.PathLike[str] | None = None,
        *,
        errors: ErrorMode = "collect",
    ) -> ExpLogFollower:
        follower = cls(path or state["path"], version=state.get("version"), errors=errors)
        follower._resume(state)
        if state.get("header") is not None:
            follower._parser.start(list(state["header"]), 1)
        return follower


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

_EOL = "\r\n"  # as the lab's ELVIS writes it; every line also ends with a tab


def _columns_for(version: str) -> tuple[str, ...]:
    try:
        return EXPLOG_COLUMNS[version]
    except KeyError:
        raise ValueError(
            f"unknown ELVIS version {version!r}; known: {', '.join(EXPLOG_COLUMNS)}"
        ) from None


def format_explog_header(version: str = DEFAULT_VERSION) -> str:
    return "\t".join(_columns_for(version)) + "\t" + _EOL


def format_value(value: Any) -> str:
    """A cell as ELVIS would write it: "" for missing, shortest exact form for floats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return "nan"
        if number == 0:
            return "0"  # ELVIS writes an unset zero as a bare 0
        if number.is_integer() and abs(number) < 1e16:
            return f"{number:.1f}"
        return repr(number)
    return str(value)


def format_explog_rows(rows: Iterable[dict[str, Any]], version: str = DEFAULT_VERSION) -> str:
    """Lines for `rows` (internal names; old kept names also accepted) in `version`'s layout."""
    names = _columns_for(version)
    # Where several internal columns merge into one old column (IG1_V...), the first speaks.
    sources = [internal_names(name)[0] for name in names]
    out = []
    for row in rows:
        cells = []
        for name, source in zip(names, sources):
            value = row.get(source, row.get(name.strip()))
            text = format_value(value)
            if any(c in text for c in "\t\r\n"):
                raise ValueError(f"column '{name}' value {text!r} contains a tab or line break")
            cells.append(text)
        out.append("\t".join(cells) + "\t" + _EOL)
    return "".join(out)


def write_explog(
    path: str | os.PathLike[str],
    rows: Iterable[dict[str, Any]],
    version: str = DEFAULT_VERSION,
) -> Path:
    path = Path(path)
    text = format_explog_header(version) + format_explog_rows(rows, version)
    path.write_bytes(text.encode("utf-8"))
    return path


def append_explog_rows(
    path: str | os.PathLike[str],
    rows: Iterable[dict[str, Any]],
    version: str = DEFAULT_VERSION,
) -> Path:
    """Append rows as ELVIS does; a new (or empty) file gets the header first."""
    path = Path(path)
    existing = path.read_bytes() if path.exists() else b""
    text = format_explog_rows(rows, version)
    if not existing.strip():
        text = format_explog_header(version) + text
    else:
        header = split_lines(existing)[0][:1]
        if header and detect_version(header[0].text.split("\t")) != detect_version(
            _columns_for(version)
        ):
            raise ValueError(f"{path.name} is not an ELVIS {version} log; not appending to it")
        if not existing.endswith(b"\n"):
            text = _EOL + text  # never glue a row onto a line left unterminated
    with open(path, "ab") as handle:
        handle.write(text.encode("utf-8"))
    return path
