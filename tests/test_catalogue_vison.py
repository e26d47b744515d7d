"""The catalogue logs, column by column, what vison's acquisition scripts log.

Data written by vison's scripts must pass our configuration check (check.py compares each
exposure's EXP_LOG values of COMPARED_KEYS with the catalogue's column). The expected values
below are written out from vison's test modules (github.com/ruymanengithub/vison, commit
e129e7e2; paths relative to its `vison/` folder), independently of our catalogue: each column is
the ELVIS defaults, filled by the module's `commvalues`, overridden by the column's own values,
then by the campaign's `diffvalues` (`datamodel/scriptic.py update_structdict`,
`campaign/campaign.py`). Chamber-dependent values (exposure times, filter position, mirror
focus) come from the chamber profile, as vison's come from its OGSE profile.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from engine.campaign.catalogue import CATALOGUE, instance_names
from engine.campaign.chamber import ChamberProfile, load_chamber
from engine.campaign.config import load_campaign
from engine.campaign.script_params import log_values
from engine.formats.explog import read_explog, write_explog
from engine.formats.geometry import SMALL
from engine.pipeline.results import read_result
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim.elvis import SimulationRequest, simulate
from engine.tasks.check import COMPARED_KEYS

CHAMBERS = {name: load_chamber(name) for name in ("B_NOSTROMO", "default")}
IG1_KEYS = [f"IG1_{n}_{h}" for n in (1, 2, 3) for h in "TB"]

# ELVIS 6.5.X = 7.5.X script defaults, under EXP_LOG names (datamodel/scriptic.py,
# script_dictionary['6.5.X']['defaults']).
VISON_DEFAULTS: dict[str, Any] = {
    "exptime": 0.0, "rdmode": "fwd_bas", "vstart": 0, "vend": 2086, "chinj": 0, "chinj_on": 1, "chinj_of": 1,
    "id_wid": 100, "id_dly": 1500, "toi_ch": 1000, "toi_tp": 1000, "toi_ro": 1000, "v_tpump": 0, "s_tpump": 0,
    "v_tp_mod": 123, "s_tp_mod": 23, "v_tp_cnt": 1000, "s_tp_cnt": 1000, "dwell_v": 0, "dwell_s": 0,
    "IDL": 13.0, "IDH": 18.0, "IG2_T": 2.0, "IG2_B": 2.0, "RD_T": 16.0, "RD_B": 16.0,
    "wave": 4, "mirr_on": 0, "mirr_pos": 70.0, "source": "flat", **{k: 6.0 for k in IG1_KEYS},
}


@dataclasses.dataclass
class VisonScript:
    """One vison test script: common values, (frames, values) per column, campaign diffvalues."""

    common: dict[str, Any]
    columns: list[tuple[int, dict[str, Any]]]
    diff: dict[str, Any] = dataclasses.field(default_factory=dict)

    def logged(self) -> list[dict[str, Any]]:
        return [{**VISON_DEFAULTS, **self.common, **values, **self.diff} for _, values in self.columns]

    def frames(self) -> list[int]:
        return [frames for frames, _ in self.columns]


# -- chamber look-ups, named as in vison's OGSE profile ----------------------------------------

def fw(ch: ChamberProfile, nm: int) -> int:
    """`int(ogse.get_FW_ID(nm)[-1])`: the filter-wheel position of a wavelength."""
    return ch.wheel_position(nm)


def mirror_nom(ch: ChamberProfile, position: int) -> float:
    """`ogse.profile['mirror_nom']['F<position>']`: nominal focus behind a filter position."""
    return ch.focus(ch.wavelength(position))


def tfwc_flat(ch: ChamberProfile, nm: int) -> float:
    return ch.tfwc_flat[nm]


def tfwc_point(ch: ChamberProfile, nm: int) -> float:
    return ch.tfwc_point[nm]


def ig1(volts: float) -> dict[str, float]:
    return {k: volts for k in IG1_KEYS}


def _steps(start: float, stop: float, step: float) -> list[float]:
    return [start + i * step for i in range(int(round((stop - start) / step)) + 1)]


# -- vison's scripts, per test -------------------------------------------------------------------

NO_PUMP_NO_INJ = dict(toi_tp=1000, toi_ro=1000, toi_ch=1000, chinj=0, s_tpump=0, v_tpump=0)


def mot_warm(ch: ChamberProfile) -> VisonScript:
    # other/MOT_WARM.py: MW_commvalues, build_scriptdict (wavesPNT = 590, 730, 880)
    common = dict(vstart=0, vend=2086, toi_tp=1000, toi_ro=500, toi_ch=1000, chinj=0, s_tpump=0, v_tpump=0,
                  exptime=0.0, mirr_on=0, wave=4, source="flat")
    bias = dict(exptime=0, vstart=0, vend=2086, toi_ro=500, mirr_on=0, source="flat")
    columns = [
        (1, dict(bias, rdmode="rwd_bas_vs")),
        (1, dict(bias, rdmode="rwd_bas_v")),
        (1, dict(bias, rdmode="fwd_bas")),
        (1, dict(IDL=10.5, IDH=18.0, **ig1(4.5), IG2_T=7.0, IG2_B=7.0, toi_ch=250, toi_ro=500, id_wid=60,
                 id_dly=625, chinj=1, chinj_on=30, chinj_of=50, exptime=0, vstart=0, vend=2086, source="flat")),
        (1, dict(exptime=tfwc_flat(ch, 800) / 2, wave=fw(ch, 800), vstart=0, vend=2086, toi_ro=500, mirr_on=0,
                 source="flat")),
    ]
    columns += [(1, dict(wave=fw(ch, nm), exptime=0.5 * tfwc_point(ch, nm), vstart=0, vend=2086, toi_ro=500,
                         mirr_on=1, mirr_pos=mirror_nom(ch, fw(ch, nm)), source="point")) for nm in (590, 730, 880)]
    return VisonScript(common, columns)


def cosmetics(ch: ChamberProfile) -> VisonScript:
    # other/COSMETICS00.py: COS_commvalues, build_scriptdict
    common = dict(rdmode="fwd_bas", vstart=0, vend=2086, **NO_PUMP_NO_INJ, mirr_on=0, wave=4, source="flat")
    return VisonScript(common, [
        (5, dict(exptime=0, mirr_on=0, source="flat")),
        (5, dict(exptime=0.5 * tfwc_flat(ch, 800), wave=fw(ch, 800), mirr_on=0, source="flat")),
    ])


def bias(rdmode: str | None) -> Callable[[ChamberProfile], VisonScript]:
    # dark/BIAS0X.py: BIAS01_commvalues; campaign/campaign.py: N = 10, diffBIAS0X (BIAS02: rwd_bas_v)
    def build(ch: ChamberProfile) -> VisonScript:
        common = dict(vstart=0, vend=2086, **NO_PUMP_NO_INJ, rdmode="fwd_bas", exptime=0.0, mirr_on=0, wave=4,
                      source="flat")
        diff: dict[str, Any] = dict(mirr_on=0)
        if rdmode:
            diff["rdmode"] = rdmode
        return VisonScript(common, [(10, dict(exptime=0))], diff)
    return build


def dark(ch: ChamberProfile) -> VisonScript:
    # dark/DARK01.py: DARK01_commvalues; campaign/campaign.py: N = 4, exptime 565 s, diff mirr_on 0
    common = dict(vstart=0, vend=2086, wave=4, source="flat")
    return VisonScript(common, [(4, dict(exptime=565.0))], dict(mirr_on=0))


CHINJ_COMMON = dict(vstart=0, vend=2086, chinj=1, chinj_on=30, chinj_of=100, id_wid=60, exptime=0.0, mirr_on=0,
                    wave=4, source="flat")


def chinj01(ch: ChamberProfile) -> VisonScript:
    # inject/CHINJ01.py: CHINJ01_commvalues, build_scriptdict; campaign/campaign.py: IDL 11, IDH 18,
    # IG2 6, IG1 2.5..6.75, toi_chinj 500, id_delays 2.5 and 1.5 x toi_chinj
    columns = [(1, dict(IDL=11.0, IDH=18.0, IG2_T=6.0, IG2_B=6.0, id_dly=delay, toi_ch=500, **ig1(v)))
               for delay in (1250, 750) for v in _steps(2.5, 6.75, 0.25)]
    return VisonScript(CHINJ_COMMON, columns, dict(mirr_on=0))


def chinj02(ch: ChamberProfile) -> VisonScript:
    # inject/CHINJ02.py: CHINJ02_commvalues, build_scriptdict; campaign/campaign.py: IDL 9.5..12.5,
    # IDH 18, IG1 4, IG2 6, toi_chinj 500
    columns = [(1, dict(IDL=v, IDH=18.0, **ig1(4.0), IG2_T=6.0, IG2_B=6.0, id_dly=delay, toi_ch=500))
               for delay in (1250, 750) for v in _steps(9.5, 12.5, 0.25)]
    return VisonScript(CHINJ_COMMON, columns, dict(mirr_on=0))


TP_INJECTION = dict(IDH=18.0, **ig1(4.0), IG2_T=6.0, IG2_B=6.0, toi_ro=1000, chinj=1, chinj_on=2066, chinj_of=0,
                    id_wid=60, exptime=0.0, mirr_on=0, wave=4, source="flat")


def vertical_pumping(idl: float) -> Callable[[ChamberProfile], VisonScript]:
    # pump/TP01.py (TP11.py: IDL 10.5): TP01_commvalues, build_scriptdict; campaign/campaign.py:
    # toi_chinj 250, Nshuffles_V 5000, toi_tpv 50..8000, modes 123/234/341/412.
    # v_tp_cnt is a common value: the unpumped BGD columns log 5000 too.
    def build(ch: ChamberProfile) -> VisonScript:
        common = dict(TP_INJECTION, IDL=idl, vstart=0, vend=2086, v_tpump=1, v_tp_cnt=5000, s_tpump=0)
        columns = []
        for delay in (625, 375):
            columns.append((1, dict(v_tpump=0, id_dly=delay, toi_ch=250)))
            columns += [(1, dict(toi_tp=toi, id_dly=delay, v_tp_mod=mode, toi_ch=250))
                        for toi in (50, 200, 1000, 2000, 4000, 8000) for mode in (123, 234, 341, 412)]
        return VisonScript(common, columns)
    return build


def serial_pumping(idl: float) -> Callable[[ChamberProfile], VisonScript]:
    # pump/TP02.py (TP21.py: IDL 10.5): TP02_commvalues, build_scriptdict; campaign/campaign.py:
    # toi_chinj 250, Nshuffles_H 5000, dwell_sv 0/4.75/14.3/28.6, modes 23/31, diff mirr_on 0.
    # s_tp_cnt is a common value: the unpumped BGD columns log 5000 too.
    def build(ch: ChamberProfile) -> VisonScript:
        common = dict(TP_INJECTION, IDL=idl, vstart=0, vend=100, v_tpump=0, s_tpump=1, s_tp_cnt=5000)
        columns = []
        for delay in (625, 375):
            columns.append((1, dict(v_tpump=0, s_tpump=0, id_dly=delay, toi_ch=250)))
            columns += [(1, dict(dwell_s=dwell, v_tpump=0, s_tpump=1, id_dly=delay, s_tp_mod=mode, toi_ch=250))
                        for dwell in (0.0, 4.75, 14.3, 28.6) for mode in (23, 31)]
        return VisonScript(common, columns, dict(mirr_on=0))
    return build


def flat_series(nm: int, fractions: list[float], frames: list[int], time_of: Callable = tfwc_flat,
                diff: dict[str, Any] | None = None) -> Callable[[ChamberProfile], VisonScript]:
    # flat/PTC0X.py PTC0X_commvalues and flat/FLAT0X.py FLAT0X_commvalues (same logged values):
    # wave = the filter of the test on every column; campaign/campaign.py: diff mirr_on 0
    def build(ch: ChamberProfile) -> VisonScript:
        common = dict(vstart=0, vend=2086, exptime=0.0, mirr_on=0, wave=fw(ch, nm), source="flat")
        columns = [(n, dict(exptime=f * time_of(ch, nm))) for f, n in zip(fractions, frames)]
        return VisonScript(common, columns, dict(mirr_on=0, **(diff or {})))
    return build


def nonlinearity(low: list[float], high: list[float], low_nm: int, high_nm: int,
                 diff: dict[str, Any] | None = None) -> Callable[[ChamberProfile], VisonScript]:
    # flat/NL01.py (one filter: NL01_commvalues wave = its filter on every column, BGD included) and
    # flat/NL02.py (BGD and STAB at filter B, fluences at their own filter); Nbgd 3, Nstab0 1;
    # campaign/campaign.py: exptinter 0.5 tFWC_flat of the STAB filter, diff mirr_on 0 (NL02RD: RD)
    def build(ch: ChamberProfile) -> VisonScript:
        common = dict(vstart=0, vend=2086, exptime=0.0, mirr_on=0, source="flat")
        stab = (1, dict(exptime=0.5 * tfwc_flat(ch, high_nm), wave=fw(ch, high_nm)))
        columns = [(3, dict(exptime=0, wave=fw(ch, high_nm))), stab]
        for nm, fractions in ((low_nm, low), (high_nm, high)):
            for f in fractions:
                columns += [(4, dict(exptime=f * tfwc_flat(ch, nm), wave=fw(ch, nm))), stab]
        return VisonScript(common, columns, dict(mirr_on=0, **(diff or {})))
    return build


def point_series(nm: int, fractions: list[float], frames: list[int]) -> Callable[[ChamberProfile], VisonScript]:
    # point/PSF0X.py: PSF0X_commvalues (mirror on at the filter's nominal focus, point source),
    # build_scriptdict; campaign/campaign.py: PSF01/PSF02/PSFLUX00 exptimes x tFWC_point
    def build(ch: ChamberProfile) -> VisonScript:
        common = dict(vstart=0, vend=2086, **NO_PUMP_NO_INJ, mirr_on=1, wave=fw(ch, nm),
                      mirr_pos=mirror_nom(ch, fw(ch, nm)), source="point")
        return VisonScript(common, [(n, dict(exptime=f * tfwc_point(ch, nm))) for f, n in zip(fractions, frames)])
    return build


def focus(nm: int) -> Callable[[ChamberProfile], VisonScript]:
    # point/FOCUS00.py: FOCUS00_commvalues, build_scriptdict; campaign/campaign.py: exptime
    # 0.6 tFWC_point, deltafocus 0.2 mm
    def build(ch: ChamberProfile) -> VisonScript:
        common = dict(vstart=0, vend=2086, **NO_PUMP_NO_INJ, mirr_on=1, wave=4, source="point")
        columns = [(1, dict(exptime=0.6 * tfwc_point(ch, nm), mirr_pos=mirror_nom(ch, fw(ch, nm)) + 0.2 * j,
                            wave=fw(ch, nm))) for j in range(-4, 5)]
        return VisonScript(common, columns)
    return build


def persistence(ch: ChamberProfile) -> VisonScript:
    # other/PERSIST01.py: PER01_commvalues (mirr_on 1 on every column), build_scriptdict (RESET,
    # REFER, LATENT at filter 4 with the mirror at its nominal focus, source flat; EXPOSE at filter 2,
    # 10 mm below focus); campaign/campaign.py: exptSATUR 600 s, exptLATEN 565 s
    common = dict(vstart=0, vend=2086, **NO_PUMP_NO_INJ, exptime=0.0, wave=2, mirr_on=1, source="point")
    parked = dict(wave=4, mirr_pos=mirror_nom(ch, 4), source="flat")
    return VisonScript(common, [
        (5, dict(exptime=0, **parked)),
        (3, dict(exptime=565.0, **parked)),
        (1, dict(exptime=600.0, wave=2, mirr_pos=mirror_nom(ch, 2) - 10.0)),
        (3, dict(exptime=565.0, **parked)),
    ])


PTC01 = ([0.05, 0.10, 0.20, 0.30, 0.50, 0.70, 0.80, 0.90, 1.00, 1.10, 1.20], [10] * 8 + [4] * 3)
PTC02 = ([0.10, 0.30, 0.50, 0.70, 0.80, 0.90], [4] * 6)
NL01_RELFLU = [0.005, 0.007, 0.01, 0.02, 0.03, 0.05, 0.10, 0.20, 0.30, 0.55, 0.70, 0.80, 0.85, 0.90, 0.95, 1.00, 1.10]
NL02_RELFLU = [0.005, 0.007, 0.01, 0.02, 0.03, 0.05, 0.10, 0.15, 0.20, 0.25, 0.50, 0.70, 0.80, 0.85, 0.90, 0.95,
               1.00, 1.10]
PSF_RELFLU = [0.05, 0.25, 0.50, 0.75, 0.90]  # point/PSF0X.py PSF0X_relfluences

VISON: dict[str, Callable[[ChamberProfile], VisonScript]] = {
    "MOT_WARM": mot_warm,
    "COSMETICS00": cosmetics,
    "BIAS01": bias(None),
    "BIAS02": bias("rwd_bas_v"),
    "DARK01": dark,
    "CHINJ01": chinj01,
    "CHINJ02": chinj02,
    "TP01": vertical_pumping(11.0),
    "TP11": vertical_pumping(10.5),
    "TP02": serial_pumping(11.0),
    "TP21": serial_pumping(10.5),
    "FLAT01": flat_series(800, [0.25, 0.50, 0.75], [80, 60, 30]),  # flat/FLAT0X.py
    "PTC01": flat_series(800, *PTC01),
    "BF01": flat_series(800, *PTC01),  # flat/BF01.py: surrogate PTC01, diffBF01 = PTC01's
    "NL01": nonlinearity(NL01_RELFLU, [], 0, 0),
    # NL02: fluences up to 25 % on filter A (0 nm), from 15 % on filter B (880 nm)
    "NL02": nonlinearity(NL02_RELFLU[:10], NL02_RELFLU[7:], 0, 880),
    "PERSIST01": persistence,
}
for _nm in (590, 730, 800, 880, 0):
    # campaign/campaign.py, second FLATFLUX00 definition: PTC0X, 10/30/60/80 % x tFWC_point(w).
    # vison quirk: a flat-source test timed with the point source's full-well times (its own check
    # expects 5/20/50/80 % of full well, neither). We expose at 10-80 % of the flat full well.
    VISON[f"FLATFLUX00_{_nm}"] = flat_series(_nm, [0.10, 0.30, 0.60, 0.80], [1] * 4, time_of=tfwc_flat)
    VISON[f"PSFLUX00_{_nm}"] = point_series(_nm, [0.10, 0.30, 0.60, 0.80], [1] * 4)
VISON["FLAT_STB"] = flat_series(800, [0.30], [15])  # flat/FLAT0X.py: the stability flats
for _nm in (590, 730, 880):
    VISON[f"FLAT02_{_nm}"] = flat_series(_nm, [0.25, 0.75], [80, 30])  # flat/FLAT0X.py
    VISON[f"PTC02_{_nm}"] = flat_series(_nm, *PTC02)
    VISON[f"BF01_{_nm}"] = flat_series(_nm, *PTC02)  # flat/BF01.py: surrogate PTC02_<w>
for _temp in ("148K", "158K"):
    VISON[f"PTC02_{_temp}"] = flat_series(800, *PTC02)  # the script sets no temperature
    VISON[f"PSF02_{_temp}"] = point_series(800, PSF_RELFLU, [20, 14, 10, 4, 4])
for _tag, _rd in (("155R", 15.5), ("160R", 16.0), ("165R", 16.5)):
    VISON[f"PTC02_{_tag}"] = flat_series(800, *PTC02, diff=dict(RD_T=_rd, RD_B=_rd))
    # NL02RD: the NL01 fluences split at 20 %: below on filter A (0 nm), from 20 % on B (880 nm)
    VISON[f"NL02_{_tag}"] = nonlinearity([f for f in NL01_RELFLU if f < 0.20], [f for f in NL01_RELFLU if f >= 0.20],
                                         0, 880, diff=dict(RD_T=_rd, RD_B=_rd))
for _nm in (590, 730, 800, 880):
    VISON[f"PSF01_{_nm}"] = point_series(_nm, PSF_RELFLU, [20, 15, 10, 4, 4])
    VISON[f"FOCUS00_{_nm}"] = focus(_nm)


def _mismatches(expected: dict[str, Any], logged: dict[str, Any], keys=COMPARED_KEYS) -> list[str]:
    wrong = []
    for key in keys:
        want, got = expected[key], logged.get(key)
        if isinstance(want, str):
            same = str(got) == want
        else:
            same = got not in (None, "") and float(got) == pytest.approx(float(want), rel=1e-3, abs=1e-4)
        if not same:
            wrong.append(f"{key}: vison {want!r}, logged {got!r}")
    return wrong


def test_the_expected_values_cover_every_compared_key():
    assert set(VISON_DEFAULTS) == set(COMPARED_KEYS)


@pytest.mark.parametrize("chamber", sorted(CHAMBERS))
@pytest.mark.parametrize("name", instance_names())
def test_each_column_logs_what_vison_s_script_logs(name, chamber):
    ch = CHAMBERS[chamber]
    assert name in VISON, f"{name}: add what vison's script logs for it to VISON"
    vison = VISON[name](ch)
    test = CATALOGUE[name]
    assert test.frames_per_column(ch) == vison.frames()
    problems = []
    for index, (expected, column) in enumerate(zip(vison.logged(), test.script_columns(ch)), start=1):
        wrong = _mismatches(expected, log_values(column))
        if wrong:
            problems.append(f"column {index} ({column['comments']}): " + "; ".join(wrong))
    assert not problems, f"{name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("handle", ["PSF01", "PSF02", "PSFLUX00", "FOCUS00"])
def test_point_source_tests_dither_as_vison_s_scripts(handle):
    # point/PSF0X.py PSF0X_commvalues: motor on, 2 steps of 120; point/FOCUS00.py: motor off
    # (ELVIS defaults: 2 steps of 50). vison's own log check compares these for PSF0X.
    if handle == "FOCUS00":
        want = {"motr": 0, "motr_cnt": 2, "motr_siz": 50}
    else:
        want = {"motr": 1, "motr_cnt": 2, "motr_siz": 120}
    for test in (CATALOGUE[name] for name in instance_names() if CATALOGUE[name].handle == handle):
        for column in test.script_columns(CHAMBERS["B_NOSTROMO"]):
            assert not _mismatches(want, log_values(column), keys=want), (test.name, column["comments"])


# -- end to end: vison-style data pass our check --------------------------------------------------

CAMPAIGN = """
[campaign]
block = "TESTBLOCK"
chamber = "B_NOSTROMO"

[hardware]   # what the simulator stamps by default
roe = "ROE-SIM"
rpsu = "RPSU-SIM"
ccd1 = "CCD1-SIM"
ccd2 = "CCD2-SIM"
ccd3 = "CCD3-SIM"

[paths]
data = "data"
results = "results"

[sessions.D11]
day_folder = "12_Mar_19"
tests = ["TP01"]
"""


def _check_tp01(root: Path, tag: str) -> dict[str, Any]:
    campaign = load_campaign(root / "campaign.toml")
    day_folder = root / "data" / "12_Mar_19"
    PipelineRun(campaign, RunOptions(session="D11", check_only=True, day_folder=str(day_folder), tag=tag)).run_aim()
    return read_result(campaign.paths.results / "D11" / "TP01")


@pytest.fixture(scope="module")
def tp01_day(tmp_path_factory):
    root = tmp_path_factory.mktemp("tp01")
    (root / "data").mkdir()
    (root / "campaign.toml").write_text(CAMPAIGN)
    result = simulate(SimulationRequest(tests=("TP01",), out=root / "data", chamber=CHAMBERS["B_NOSTROMO"],
                                        geometry=SMALL, jobs=1))
    return root, result.explog_path


@pytest.fixture(autouse=True)
def _state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VISON_STATE_DIR", str(tmp_path / "state"))


def test_tp01_logged_as_vison_s_script_passes_the_check(tp01_day):
    root, explog_path = tp01_day
    rows = read_explog(explog_path).rows_for_test("TP01")
    vison = VISON["TP01"](CHAMBERS["B_NOSTROMO"]).logged()
    obsids = sorted({row["ObsID"] for row in rows})
    assert len(obsids) == len(vison)  # one frame per column
    for row in rows:
        expected = vison[obsids.index(row["ObsID"])]
        assert not _mismatches(expected, row), (row["ObsID"], row["CCD"], _mismatches(expected, row))
    assert {row["v_tp_cnt"] for row in rows if row["v_tpump"] == 0} == {5000}  # the BGD frames

    record = _check_tp01(root, "_vison")
    assert "check" in record["timings_s"]
    missdata = [r["reason"] for r in record["flag_reasons"] if r["flag"] == "MISSDATA"]
    assert "MISSDATA" not in record["flags"] and not missdata, missdata


def test_a_bgd_frame_logged_with_another_shuffle_count_is_missdata(tp01_day, tmp_path):
    # the control: the check does compare v_tp_cnt on the unpumped frames
    root, explog_path = tp01_day
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("results"))
    log = read_explog(explog_path)
    bgd = min(row["ObsID"] for row in log.rows if row["v_tpump"] == 0)
    rows = [dict(row, v_tp_cnt=1000) if row["ObsID"] == bgd else row for row in log.rows]
    write_explog(copy / explog_path.relative_to(root), rows, log.version)
    record = _check_tp01(copy, "_control")
    reasons = [r["reason"] for r in record["flag_reasons"] if r["flag"] == "MISSDATA"]
    assert any("v_tp_cnt" in reason and f"OBSID {bgd}" in reason for reason in reasons), reasons
