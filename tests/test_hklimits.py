"""HK limits table and checks (configs/hk_limits.toml, engine/formats/hklimits.py)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest

from engine.formats import load_hk_limits, read_hk
from engine.formats.hk import INTERNAL_KEYS, write_hk
from engine.formats.hklimits import HKLimitsError, default_limits_path
from engine.paths import configs_dir


@pytest.fixture(scope="module")
def limits():
    return load_hk_limits()


COMMANDED = {  # an EXP_LOG row's commanded voltages (7.5.X names)
    "OD_1_T": 26.0, "OD_1_B": 26.0, "RD_T": 16.0, "RD_B": 16.0,
    "IG1_2_T": 6.0, "IG1_2_B": 5.0, "IG2_T": 2.0, "IDH": 18.0, "IDL": 13.0,
}


# ---------------------------------------------------------------- the table


def test_default_table_covers_every_7_5_X_key(limits):
    assert default_limits_path() == configs_dir() / "hk_limits.toml"
    assert sorted(limits.keys()) == sorted(INTERNAL_KEYS)
    for key in INTERNAL_KEYS:
        assert limits.limit(key, "P").kind in "ARI" and limits.limit(key, "S").kind in "ARI"


def test_commanded_counterparts(limits):
    expected = {
        "CCD1_OD_T": "OD_1_T", "CCD3_OD_B": "OD_3_B", "COMM_RD_T": "RD_T", "COMM_RD_B": "RD_B",
        "CCD1_IG1_B": "IG1_1_B", "CCD2_IG1_B": "IG1_2_B", "CCD3_IG1_T": "IG1_3_T",
        "COMM_IG2_T": "IG2_T", "FPGA_BIAS_ID1": "IDH", "FPGA_BIAS_ID2": "IDL",
    }
    for key, column in expected.items():
        assert limits.commanded[key] == column


def test_table_values(limits):
    temp = limits.limits["CCD2_TEMP_B"]
    assert (temp["P"].kind, temp["P"].lo, temp["P"].hi) == ("A", -121.0, -119.0)
    assert (temp["S"].lo, temp["S"].hi) == (-133.0, 35.0)
    assert limits.limit("RPSU_VAN_N_V", "S").lo == -8.2  # bounds in order (vison had them reversed)
    assert limits.limit("SPW_STATUS_REG", "P").value == 12192
    assert limits.limit("CCD1_OD_T", "P").kind == "R" and limits.limit("CCD1_OD_T", "S").kind == "A"
    assert limits.units["RPSU_28V_PRI_I"] == "A" and limits.units["CCD1_TEMP_T"] == "C"


# ---------------------------------------------------------------- single readings


@pytest.mark.parametrize(
    "key, value",
    [
        ("CCD1_TEMP_T", -120.0), ("CCD3_TEMP_B", -119.5), ("VID_PCB_TEMP_T", 22.0),
        ("FPGA_BIAS_DD", 22.0), ("FPGA_BIAS_OG", 2.0), ("FPGA_VCCD_V", 30.0),
        ("RPSU_VCCD_V", 33.0), ("RPSU_28V_PRI_V", 28.0), ("RPSU_28V_PRI_I", 0.42),
        ("RPSU_VAN_N_V", -7.0), ("RPSU_TEMP1", 25.0), ("hkInvalidFlg", 0), ("SPW_STATUS_REG", 12192),
    ],
)
def test_in_limit_values_are_ok(limits, key, value):
    verdict = limits.check(key, value)
    assert verdict.status == "ok", verdict.reason
    assert verdict.tier == "P"


def test_disconnected_ccd_sensor_is_critical(limits):
    verdict = limits.check("CCD1_TEMP_T", -246.08)
    assert verdict.status == "critical"
    assert verdict.tier == "S" and verdict.kind == "A" and verdict.limit == (-133.0, 35.0)
    assert verdict.reason == "CCD1_TEMP_T = -246.08 C: outside safe limits [-133, 35] (sensor disconnected?)"


def test_absolute_zero_reading_is_a_disconnected_sensor(limits):
    verdict = limits.check("VID_PCB_TEMP_B", -273.15)
    assert verdict.status == "critical" and "sensor disconnected" in verdict.reason


def test_outside_performance_only_is_a_warning(limits):
    verdict = limits.check("CCD1_TEMP_T", -125.0)
    assert verdict.status == "warning" and verdict.tier == "P"
    assert "outside performance limits [-121, -119]" in verdict.reason
    assert "disconnected" not in verdict.reason


def test_relative_limit_uses_the_commanded_value(limits):
    ok = limits.check("CCD1_OD_T", 26.15, COMMANDED)
    assert ok.status == "ok" and ok.kind == "R"
    assert ok.limit == pytest.approx((25.8, 26.2))
    assert "commanded OD_1_T = 26 V" in ok.reason

    edge = limits.check("CCD1_OD_T", 26.2, COMMANDED)  # on the edge is in
    assert edge.status == "ok"

    off = limits.check("CCD1_OD_T", 26.5, COMMANDED)
    assert off.status == "warning" and off.tier == "P"
    assert off.reason.startswith("CCD1_OD_T = 26.5 V: outside performance limits [25.8, 26.2]")

    # the same reading, commanded elsewhere, is fine
    assert limits.check("CCD1_OD_T", 26.5, {"OD_1_T": 26.5}).status == "ok"

    # beyond the absolute safe range: critical whatever was commanded
    assert limits.check("CCD1_OD_T", 31.0, COMMANDED).status == "critical"


def test_relative_limits_follow_their_own_counterpart(limits):
    # CCD2_IG1_B is checked against IG1_2_B (5 V), not the T half (6 V)
    assert limits.check("CCD2_IG1_B", 5.05, COMMANDED).status == "ok"
    assert limits.check("CCD2_IG1_B", 6.0, COMMANDED).status == "warning"
    assert limits.check("FPGA_BIAS_ID1", 18.1, COMMANDED).status == "ok"
    assert limits.check("FPGA_BIAS_ID2", 18.1, COMMANDED).status == "warning"  # IDL is 13


def test_relative_limit_without_commanded_value_is_not_checkable(limits):
    verdict = limits.check("COMM_RD_T", 16.4)
    assert verdict.status == "ok"
    assert "not checkable" in verdict.reason and "RD_T" in verdict.reason
    assert limits.check("COMM_RD_T", 16.4, {"RD_T": None}).status == "ok"


def test_identity_flags(limits):
    assert limits.check("VccdErrFlg", 0).status == "ok"
    raised = limits.check("VccdErrFlg", 1)
    assert raised.status == "critical" and raised.kind == "I" and raised.limit == (0, 0)
    assert "VccdErrFlg = 1: differs from the safe value 0" == raised.reason
    wrong = limits.check("SPW_STATUS_REG", 12000)
    assert wrong.status == "critical" and "12192" in wrong.reason


def test_no_reading_and_unknown_key(limits):
    assert limits.check("CCD1_TEMP_T", math.nan).status == "warning"
    unknown = limits.check("HK_RD_Top_CCD1", 16.0)
    assert unknown.status == "ok" and unknown.tier is None and "no limits" in unknown.reason


def test_nominal_is_the_middle_of_the_performance_limits(limits):
    assert limits.nominal("CCD1_TEMP_T") == -120.0
    assert limits.nominal("CCD1_OD_T", COMMANDED) == pytest.approx(26.0)
    assert limits.nominal("CCD1_OD_T") is None
    assert limits.nominal("SPW_STATUS_REG") == 12192


# ---------------------------------------------------------------- whole files


def hk_values(limits, n: int) -> dict[str, np.ndarray]:
    """Every key at the middle of its performance limits (0 where not checkable)."""
    values = {}
    for key in INTERNAL_KEYS:
        mid = limits.nominal(key, COMMANDED)
        values[key] = np.full(n, mid if mid is not None else 0.0)
    return values


def test_check_file_sees_an_excursion_the_mean_hides(tmp_path, limits):
    n = 71
    values = hk_values(limits, n)
    values["CCD1_TEMP_T"][30] = -100.0  # one sample warm: the mean stays within -121..-119
    values["CCD2_TEMP_T"][40] = -246.08  # one sample from a sensor dropping out
    values["hkInvalidFlg"][10] = 1  # a flag raised once
    start = datetime(2019, 7, 25, 12, 16, 3)
    path = write_hk(tmp_path / "HK_1191_250719D121603T_ROE1.txt",
                    [start + timedelta(seconds=i) for i in range(n)], values)
    hk = read_hk(path)
    assert -121 < hk.stats("CCD1_TEMP_T")[0] < -119

    verdicts = {v.key: v for v in limits.check_file(hk, COMMANDED)}
    assert set(verdicts) == set(INTERNAL_KEYS)

    warm = verdicts["CCD1_TEMP_T"]
    assert warm.status == "warning" and warm.stat == "max" and warm.value == -100.0
    assert warm.reason.startswith("CCD1_TEMP_T max = -100 C: outside performance limits")

    dropped = verdicts["CCD2_TEMP_T"]
    assert dropped.status == "critical" and "sensor disconnected" in dropped.reason

    assert verdicts["hkInvalidFlg"].status == "critical"
    assert verdicts["CCD1_OD_T"].status == "ok" and verdicts["CCD1_OD_T"].kind == "R"
    bad = sorted(k for k, v in verdicts.items() if v.status != "ok")
    assert bad == ["CCD1_TEMP_T", "CCD2_TEMP_T", "hkInvalidFlg"]


# ---------------------------------------------------------------- overrides and bad tables


def test_overrides_adjust_or_replace_a_tier():
    widened = load_hk_limits(overrides={"limits": {"CCD1_TEMP_T": {"P": {"lo": -125.0}}}})
    assert widened.check("CCD1_TEMP_T", -123.0).status == "ok"
    assert widened.limit("CCD1_TEMP_T", "P").hi == -119.0  # the rest of the tier kept
    assert widened.check("CCD2_TEMP_T", -123.0).status == "warning"  # others untouched

    replaced = load_hk_limits(overrides={"limits": {"RPSU_TEMP1": {"P": {"kind": "A", "lo": 0, "hi": 30}}}})
    assert replaced.check("RPSU_TEMP1", 35.0).status == "warning"

    retargeted = load_hk_limits(overrides={"commanded": {"CCD1_OD_T": "OD_1_B"}})
    assert retargeted.check("CCD1_OD_T", 25.0, {"OD_1_T": 26.0, "OD_1_B": 25.0}).status == "ok"


@pytest.mark.parametrize(
    "entry, message",
    [
        ('P = { kind = "X", lo = 0, hi = 1 }\nS = { kind = "A", lo = 0, hi = 1 }', r":2: limits.FOO.P.kind: expected one of 'A', 'R', 'I'; got 'X'"),
        ('P = { kind = "A", hi = 1 }\nS = { kind = "A", lo = 0, hi = 1 }', r":2: limits.FOO.P.lo: missing required key 'lo'"),
        ('P = { kind = "A", lo = 2, hi = 1 }\nS = { kind = "A", lo = 0, hi = 1 }', r":2: limits.FOO.P: expected lo <= hi"),
        ('P = { kind = "I", value = "zero" }\nS = { kind = "I", value = 0 }', r":2: limits.FOO.P.value: expected a number, e.g. value = 0; got a string"),
        ('P = { kind = "A", lo = 0, hi = 1 }', r":1: limits.FOO: expected both tiers P and S, missing S"),
        ('P = { kind = "R", lo = -1, hi = 1 }\nS = { kind = "A", lo = 0, hi = 1 }', r":1: limits.FOO: relative \(R\) limit needs a commanded counterpart"),
        ('P = { kind = "A", lo = 0, high = 1 }\nS = { kind = "A", lo = 0, hi = 1 }', r":2: limits.FOO.P.high: unknown field 'high' of a kind \"A\" limit; did you mean 'hi'\?"),
    ],
)
def test_bad_entries_name_file_line_and_key(tmp_path, entry, message):
    path = tmp_path / "campaign_hk_limits.toml"
    path.write_text(f"[limits.FOO]\n{entry}\n")
    with pytest.raises(HKLimitsError, match="campaign_hk_limits.toml" + message):
        load_hk_limits(path)


def test_every_bad_entry_is_reported_at_once(tmp_path):
    path = tmp_path / "campaign_hk_limits.toml"
    path.write_text('[limits.FOO]\nP = { kind = "X", lo = 0, hi = 1 }\nS = { kind = "A", lo = 2, hi = 1 }\n'
                    '[limits.BAR]\nP = { kind = "A", lo = 0, hi = 1 }\nunits = "V"\n')
    with pytest.raises(HKLimitsError) as caught:
        load_hk_limits(path)
    assert [(p.line, p.key) for p in caught.value.problems] == [
        (2, "limits.FOO.P.kind"), (3, "limits.FOO.S"), (4, "limits.BAR"), (6, "limits.BAR.units")]


def test_not_toml_at_all(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[limits\n")
    with pytest.raises(HKLimitsError, match=r"broken.toml:1:8: TOML syntax error"):
        load_hk_limits(path)
