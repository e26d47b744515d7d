"""The parameters of an ELVIS acquisition script: rows, order and defaults (ELVIS 6.5.X-7.5.X).

A script column is one configuration; each parameter not set by the test takes its default here,
and the campaign's "differential" values (operator, serials) override both.
"""

from __future__ import annotations

from typing import Any, Mapping

SCRIPT_ROWS: tuple[str, ...] = (
    "frames", "program", "test", "IDL", "IDH", "IG1_1_T", "IG1_2_T", "IG1_3_T", "IG1_1_B",
    "IG1_2_B", "IG1_3_B", "IG2_T", "IG2_B", "OD_1_T", "OD_1_B", "OD_2_T", "OD_2_B", "OD_3_T",
    "OD_3_B", "RD_T", "RD_B", "IPHI1", "IPHI2", "IPHI3", "IPHI4", "rdmode", "flushes", "siflsh",
    "siflsh_p", "swellw", "swelldly", "inisweep", "vstart", "vend", "toi_fl", "toi_tp", "toi_ro",
    "toi_ch", "chinj", "chinj_on", "chinj_of", "id_wid", "id_dly", "chin_dly", "s_tpump", "s_tpmod",
    "v_tpump", "v_tpmod", "s_tp_cnt", "v_tp_cnt", "dwell_v", "dwell_s", "exptime", "shuttr",
    "e_shuttr", "mirr_on", "mirr_pos", "wave", "motr_on", "motr_cnt", "motr_siz", "source",
    "operator", "sn_ccd1", "sn_ccd2", "sn_ccd3", "sn_roe", "sn_rpsu", "comments", "roe-tab",
)

# Summing-well width and delay per readout mode.
SUMWELL: dict[str, tuple[float, float]] = {
    "fwd_bas": (8.4, 5.625),
    "fwd_e2v": (7.15, 6.725),
    "rwd_bas_v": (8.4, 5.625),
    "rwd_bas_s": (6.5, 0.175),
    "rwd_bas_vs": (6.5, 0.175),
}

DEFAULTS: dict[str, Any] = {
    "frames": 1, "program": "CALCAMP", "test": "",
    "IDL": 13.0, "IDH": 18.0,
    **{f"IG1_{n}_{h}": 6.0 for n in (1, 2, 3) for h in "TB"},
    "IG2_T": 2.0, "IG2_B": 2.0,
    **{f"OD_{n}_{h}": 26.0 for n in (1, 2, 3) for h in "TB"},
    "RD_T": 16.0, "RD_B": 16.0,
    "IPHI1": 1, "IPHI2": 1, "IPHI3": 1, "IPHI4": 0,
    "rdmode": "fwd_bas", "flushes": 7, "siflsh": 1, "siflsh_p": 500,
    "swellw": 8.4, "swelldly": 5.625, "inisweep": 1,
    "vstart": 0, "vend": 2086,
    "toi_fl": 143, "toi_tp": 1000, "toi_ro": 1000, "toi_ch": 1000,
    "chinj": 0, "chinj_on": 1, "chinj_of": 1, "id_wid": 100, "id_dly": 1500, "chin_dly": 0,
    "s_tpump": 0, "s_tpmod": 23, "v_tpump": 0, "v_tpmod": 123, "s_tp_cnt": 1000, "v_tp_cnt": 1000,
    "dwell_v": 0, "dwell_s": 0,
    "exptime": 0.0, "shuttr": 1, "e_shuttr": 0,
    "mirr_on": 0, "mirr_pos": 70.0, "wave": 4,
    "motr_on": 0, "motr_cnt": 2, "motr_siz": 50, "source": "flat",
    "operator": "", "sn_ccd1": "", "sn_ccd2": "", "sn_ccd3": "", "sn_roe": "", "sn_rpsu": "",
    "comments": "", "roe-tab": "hrdstart",
}
assert set(DEFAULTS) == set(SCRIPT_ROWS), "every script row needs a default"

# The campaign's differential values: set by the campaign, never by a test.
DIFFERENTIAL_KEYS: tuple[str, ...] = ("operator", "sn_ccd1", "sn_ccd2", "sn_ccd3", "sn_roe", "sn_rpsu")

# Script names that the EXP_LOG (7.5.X) spells differently; the rest share names.
SCRIPT_TO_LOG: dict[str, str] = {"s_tpmod": "s_tp_mod", "v_tpmod": "v_tp_mod", "motr_on": "motr"}
SCRIPT_ONLY: frozenset[str] = frozenset(
    {"frames", "IPHI1", "IPHI2", "IPHI3", "IPHI4", "shuttr", "e_shuttr", "comments", "roe-tab"}
)


def full_column(test_values: Mapping[str, Any], differential: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every script parameter of one column: defaults, then the test's, then the campaign's."""
    unknown = set(test_values) - set(DEFAULTS)
    if unknown:
        raise KeyError(f"not ELVIS script parameters: {', '.join(sorted(unknown))}")
    column = dict(DEFAULTS)
    if "rdmode" in test_values and "swellw" not in test_values:
        column["swellw"], column["swelldly"] = SUMWELL[test_values["rdmode"]]
    column.update(test_values)
    for key, value in (differential or {}).items():
        if key not in DIFFERENTIAL_KEYS:
            raise KeyError(f"{key!r} is not a campaign differential value ({', '.join(DIFFERENTIAL_KEYS)})")
        column[key] = value
    return column


def iphi_string(column: Mapping[str, Any]) -> str:
    """The EXP_LOG's IPHI: the image phases held high during integration, e.g. I1I2I3."""
    return "".join(f"I{n}" for n in (1, 2, 3, 4) if int(column.get(f"IPHI{n}", 0)))


def log_values(column: Mapping[str, Any]) -> dict[str, Any]:
    """A script column's values under EXP_LOG (7.5.X) names, as ELVIS logs a frame of it."""
    values = {SCRIPT_TO_LOG.get(k, k): v for k, v in column.items() if k not in SCRIPT_ONLY}
    values["IPHI"] = iphi_string(column)
    return values
