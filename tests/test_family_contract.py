"""The family contract (engine/tasks/family.py): every analysis family's declaration agrees with its
code and the documentation, the numbers of BIAS01/02 and DARK01 did not move when they moved onto
it, sub-tasks without code say so everywhere, limits come typed from the campaign, calibration
products come from the campaign or an earlier result and say where from.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

import engine.sim.elvis as elvis
from engine.campaign.catalogue import CATALOGUE
from engine.campaign.chamber import load_chamber
from engine.campaign.config import ConfigError, campaign_from_dict, load_campaign
from engine.campaign.limits import GenericLimits, limit, limit_specs
from engine.formats.geometry import QUADRANTS, SMALL
from engine.pipeline.runner import PipelineRun, RunError, RunOptions
from engine.sim.records import Equipment
from engine.tasks import registry
from engine.tasks.base import AnalysisTask
from engine.tasks.contract import contract_problems, undocumented_values
from engine.tasks.family import Family, UndeclaredValue, ValueSpec, format_value
from golden_run import GOLDEN_TESTS, SERIALS, golden_numbers

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DOC = ROOT / "docs" / "results.md"
FAMILIES = registry.families()
EQUIPMENT = Equipment(sn_roe="FM14", sn_rpsu="FM14", sn_ccd1=SERIALS["ccd1"], sn_ccd2=SERIALS["ccd2"],
                      sn_ccd3=SERIALS["ccd3"])


# -- the declarations ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_declaration_holds(name):
    """Every implemented sub-task is a method, every not-implemented one is not; every limit has a
    unit and a default; every value is documented in docs/results.md."""
    family = FAMILIES[name]
    assert contract_problems(family) == []
    for spec in limit_specs(family.limits).values():
        assert spec.unit and spec.default is not None and spec.meaning, spec
    assert undocumented_values(family, RESULTS_DOC) == []
    page = RESULTS_DOC.with_suffix("") / f"{name}.md"
    docs = RESULTS_DOC.read_text() + (page.read_text() if page.is_file() else "")
    for limit_name in limit_specs(family.limits):
        assert f"`{limit_name}`" in docs, f"limit {limit_name} of {name} not documented"


def test_every_catalogue_family_is_registered():
    assert {test.family for test in CATALOGUE.values()} <= set(FAMILIES)


def test_the_workers_import_the_sessions_families_as_they_start(tmp_path):
    """Each worker imports the session's family modules as it starts (in wait mode, while the run
    waits for data), and nothing else: BIAS01's units write their masters without astropy
    (tile_compression), so no worker pays its import."""
    (tmp_path / "data" / "12_Mar_19").mkdir(parents=True)

    def modules(tests):
        campaign = campaign_from_dict({
            "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
            "paths": {"data": str(tmp_path / "data"), "results": str(tmp_path / "results")},
            "sessions": {"D11": {"day_folder": "12_Mar_19", "tests": tests}}}, base_dir=tmp_path)
        return PipelineRun(campaign, RunOptions(session="D11")).worker_modules()

    assert modules(["BIAS01", "FOCUS00_800"]) == ["engine.tasks.bias", "engine.tasks.focus"]
    assert modules(["FOCUS00_800", "PSFLUX00_800"]) == ["engine.tasks.focus", "engine.tasks.psflux"]


def test_a_family_is_found_by_its_module_name_without_importing_the_others():
    """The run's workers import only the session's family modules (registry.family_module: no
    import of every family to find one); a module declaring another name would be missed."""
    for name, family in FAMILIES.items():
        assert registry.family_module(name) == family.task.__module__


class _Sketch(AnalysisTask):
    def basci(self, ctx):  # misspelt: `basic` has no method
        return None


def test_the_contract_catches_a_misspelt_subtask_an_undocumented_value_and_a_unitless_limit(tmp_path):
    @dataclass(frozen=True)
    class NoUnit(GenericLimits):
        threshold: float = 3.0  # not declared with limit()

    family = Family("sketch", "a family being written", ("init", "check", "basic", "report"), _Sketch,
                    limits=NoUnit, values=(ValueSpec("new_value_adu", "ADU", 2, "a value nobody documented"),))
    problems = "\n".join(contract_problems(family))
    assert "sub-task 'basic' is declared but _Sketch has no method basic" in problems
    assert "NoUnit.threshold has no unit" in problems
    assert undocumented_values(family, RESULTS_DOC) == ["new_value_adu"]
    declared_off = Family("sketch", "", ("init", "check", "basci", "report"), _Sketch,
                          not_implemented=frozenset({"basci"}))
    assert "'basci' has code but is declared not implemented" in "\n".join(contract_problems(declared_off))


def test_the_contract_holds_a_per_quadrant_consumer_to_what_workers_can_run():
    """A consumer the workers cannot import by name (nested in a function) or fed for a sub-task
    the family does not have is caught before any run."""
    from engine.tasks.family import QuadrantConsumers

    ptc = registry.families()["ptc"]

    def nested(quadrant, geometry, plan):
        return None

    broken = dataclasses.replace(ptc, per_quadrant=QuadrantConsumers(ptc.per_quadrant.plan, nested, ("extract_PTX",)))
    problems = contract_problems(broken)
    assert any("not module-level" in p for p in problems)
    assert any("'extract_PTX', not one of its sub-tasks" in p for p in problems)
    assert contract_problems(ptc) == []


def test_one_formatter_uses_the_declared_precision():
    spec = ValueSpec("offset_prescan_adu", "ADU", 3, "")
    assert spec.round(2772.54921) == 2772.549 and spec.format(2772.5) == "2772.500"
    assert math.isnan(spec.round(float("nan"))) and spec.format(float("nan")) == "NaN"
    assert format_value(None) == "–" and format_value(12) == "12" and format_value([565.0, 10.0], 1) == "565.0, 10.0"


# -- BIAS01/02 and DARK01 on the contract: the same numbers as before ------------------------------

def _numbers(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _numbers(value, path + (key,))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _numbers(value, path + (index,))


def test_bias_and_dark_numbers_are_those_before_the_contract(tmp_path):
    """tests/data/golden_bias_dark.json holds result.json of the engine before the contract
    (tests/data/make_golden_bias_dark.py, same simulated day, one job). Every number must be
    identical; the products and figures the same; the only new flag is DARK01's MISSCALPROD (it
    requires the gain and none was configured or measured)."""
    golden = json.loads((ROOT / "tests" / "data" / "golden_bias_dark.json").read_text())
    now = golden_numbers(tmp_path)
    for test in GOLDEN_TESTS:
        before, after = dict(_numbers(golden[test]["ccds"])), dict(_numbers(now[test]["ccds"]))
        assert after == before, test
        before_values = dict(_numbers(golden[test]["values"]))
        after_values = {k: v for k, v in _numbers(now[test]["values"]) if k[0] != "calproducts"}
        assert after_values == before_values, test
        assert now[test]["products"] == golden[test]["products"]
        assert now[test]["figures"] == golden[test]["figures"]
    assert now["BIAS01"]["flags"] == [] and now["BIAS02"]["flags"] == []
    assert now["DARK01"]["flags"] == ["MISSCALPROD"]


# -- honest progress ------------------------------------------------------------------------------

def _simulate(out: Path, tests: tuple[str, ...]) -> Path:
    elvis.simulate(elvis.SimulationRequest(tests=tests, out=out, chamber=load_chamber("B_NOSTROMO"), geometry=SMALL,
                                           equipment=EQUIPMENT, jobs=1))
    return out


def _campaign(data: Path, results: Path, tests, **extra):
    return campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(data), "results": str(results)},
        "sessions": {"D11": {"tests": list(tests)}}, **extra,
    }, base_dir=results.parent, families=registry.campaign_schema())


@pytest.fixture(scope="module")
def cosmetics_day(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("cosmetics") / "data", ("COSMETICS00",))


@pytest.fixture
def unfinished_cosmetics(monkeypatch):
    """COSMETICS00 as a family whose analyses are declared but not written yet (the state of every
    family before its analysis lands): its `masks` and `meta` are not implemented."""
    from engine.pipeline import runner

    declared = registry.family("cosmetics")
    unfinished = dataclasses.replace(declared, task=AnalysisTask, checks=(), needs=(), required=(),
                                     not_implemented=frozenset({"masks", "meta"}))
    monkeypatch.setattr(runner, "family", lambda name: unfinished if name == "cosmetics" else registry.family(name))
    monkeypatch.setattr(runner, "task_for", lambda name: AnalysisTask() if name == "cosmetics"
                        else registry.task_for(name))
    assert declared.subtasks == ("init", "check", "masks", "meta", "report")


def test_subtasks_without_code_say_not_implemented_in_result_report_and_log(cosmetics_day, tmp_path,
                                                                            unfinished_cosmetics):
    results = tmp_path / "results"
    run = PipelineRun(_campaign(cosmetics_day, results, ["COSMETICS00"]), RunOptions(session="D11"))
    run.run_aim()
    record = json.loads((results / "D11" / "COSMETICS00" / "result.json").read_text())
    assert record["subtasks"] == {"init": "done", "check": "done", "masks": "not implemented",
                                  "meta": "not implemented", "report": "done"}
    report = (results / "D11" / "COSMETICS00" / "report.md").read_text()
    assert "- masks: **not implemented**" in report and "- check: done" in report
    log = run.log_path.read_text()
    assert "Sub-task masks of COSMETICS00: not implemented" in log


def test_dry_run_lists_not_implemented_subtasks(cosmetics_day, tmp_path, unfinished_cosmetics):
    events = []
    run = PipelineRun(_campaign(cosmetics_day, tmp_path / "results", ["COSMETICS00"]),
                      RunOptions(session="D11", dry=True), on_event=lambda kind, p: events.append((kind, dict(p))))
    run.run_aim()
    [prepared] = [p for kind, p in events if kind == "test_prepared"]
    assert prepared["subtasks"]["masks"] == "not implemented" and prepared["subtasks"]["check"] == "to run"
    assert "masks (not implemented)" in run.log_path.read_text()


def test_check_only_runs_write_the_report(cosmetics_day, tmp_path, unfinished_cosmetics):
    results = tmp_path / "results"
    PipelineRun(_campaign(cosmetics_day, results, ["COSMETICS00"]), RunOptions(session="D11", check_only=True)).run_aim()
    record = json.loads((results / "D11" / "COSMETICS00" / "result.json").read_text())
    assert record["report"] == "report.md" and record["subtasks"]["report"] == "done"
    assert (results / "D11" / "COSMETICS00" / "report.md").is_file()


def test_an_undeclared_value_is_a_bug_that_says_so(cosmetics_day, tmp_path, monkeypatch, unfinished_cosmetics):

    def init_writing_an_undeclared_value(self, ctx):
        ctx.set_value(1, "E", "mask_fraction", 0.1)

    monkeypatch.setattr(AnalysisTask, "init", init_writing_an_undeclared_value)  # COSMETICS00 runs the generic task
    results = tmp_path / "results"
    PipelineRun(_campaign(cosmetics_day, results, ["COSMETICS00"]), RunOptions(session="D11")).run_aim()
    record = json.loads((results / "D11" / "COSMETICS00" / "result.json").read_text())
    assert record["errors"] and "SUBTASKCRASH" in record["flags"]
    assert "value 'mask_fraction' is not declared by family cosmetics" in record["error_messages"][0]
    with pytest.raises(UndeclaredValue):
        raise UndeclaredValue("x")


# -- limits --------------------------------------------------------------------------------------

def _write(tmp_path: Path, limits_toml: str) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / "campaign.toml"
    path.write_text('[campaign]\nblock = "NOSTROMO"\n\n[paths]\ndata = "data"\nresults = "results"\n\n'
                    + limits_toml + '\n[sessions.D11]\ntests = ["BIAS01"]\n')
    return path


def test_family_limits_override_the_campaign_wide_ones(tmp_path):
    path = _write(tmp_path, "[limits]\nron_adu = [0.9, 1.5]\nfwhm_px = [1.0, 2.5]\n\n"
                            "[limits.bias]\nron_adu = [0.8, 1.6]\n\n[limits.focus]\nfwhm_px = [1.3, 2.8]\n")
    campaign = load_campaign(path, families=registry.campaign_schema())
    bias = campaign.limits_for(FAMILIES["bias"].limits, "bias")
    dark = campaign.limits_for(FAMILIES["dark"].limits, "dark")
    focus = campaign.limits_for(FAMILIES["focus"].limits, "focus")
    psf = campaign.limits_for(FAMILIES["psf"].limits, "psf")
    assert bias.ron_adu == (0.8, 1.6) and dark.ron_adu == (0.9, 1.5)
    assert focus.fwhm_px == (1.3, 2.8) and psf.fwhm_px == (1.0, 2.5)
    assert psf.point_background_adu == (-1.0, 5.0)  # the default
    ptc = campaign.limits_for(FAMILIES["ptc"].limits, "ptc")
    assert ptc.gain_e_per_adu == (3.1, 3.5)


def test_family_limit_problems_are_reported_with_lines(tmp_path):
    path = _write(tmp_path, "[limits.ptc]\ngain_e_per_adu = 3.3\ngain_e_per_ad = [3, 4]\n\n"
                            "[limits.biass]\nron_adu = [1, 2]\n")
    with pytest.raises(ConfigError) as caught:
        load_campaign(path, families=registry.campaign_schema())
    found = {(p.line, p.key): p.message for p in caught.value.problems}
    assert "a range [low, high] (e-/ADU)" in found[(9, "limits.ptc.gain_e_per_adu")]
    assert "did you mean 'gain_e_per_adu'?" in found[(10, "limits.ptc.gain_e_per_ad")]
    assert "did you mean 'bias'?" in found[(12, "limits.biass")]


def test_a_misspelt_subtask_flag_is_refused_with_the_family_subtasks(tmp_path):
    (tmp_path / "data").mkdir()
    config = {"campaign": {"block": "B"}, "paths": {"data": str(tmp_path / "data"), "results": str(tmp_path / "r")},
              "sessions": {"D11": {"tests": [{"name": "CHINJ01", "subtasks": {"extrat": False}}]}}}
    with pytest.raises(ConfigError) as caught:
        campaign_from_dict(config, base_dir=tmp_path, families=registry.campaign_schema())
    assert "did you mean 'extract'?" in str(caught.value)
    # loaded without the schema, the run refuses it instead of ignoring the flag
    campaign = campaign_from_dict(config, base_dir=tmp_path)
    with pytest.raises(RunError, match="unknown sub-task"):
        PipelineRun(campaign, RunOptions(session="D11")).enabled_subtasks(campaign.sessions["D11"].tests[0])


# -- calibration products --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dark_day(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("dark") / "data", ("DARK01",))


def _ptc_result(results: Path, gains: dict[tuple[int, str], float]) -> Path:
    folder = results / "D21" / "PTC01"
    folder.mkdir(parents=True)
    ccds: dict = {}
    for (ccd, q), gain in gains.items():
        ccds.setdefault(f"CCD{ccd}", {})[q] = {"gain_e_per_adu": gain}
    path = folder / "result.json"
    path.write_text(json.dumps({"test": "PTC01", "family": "ptc", "errors": False, "finished": "2019-03-13T10:00:00",
                                "run_id": "FM_PTC_RUN", "obsids": [2000, 2091], "ccds": ccds}))
    return path


def test_the_gain_comes_from_the_newest_ptc_result_and_says_so(dark_day, tmp_path):
    results = tmp_path / "results"
    gains = {(ccd, q): 3.0 + 0.1 * ccd + 0.01 * i for ccd in (1, 2, 3) for i, q in enumerate(QUADRANTS)}
    ptc_path = _ptc_result(results, gains)
    PipelineRun(_campaign(dark_day, results, ["DARK01"]), RunOptions(session="D11")).run_aim()
    record = json.loads((results / "D11" / "DARK01" / "result.json").read_text())
    assert "MISSCALPROD" not in record["flags"]
    source = record["values"]["calproducts"]["gain"]
    assert source["origin"] == "result" and source["path"] == str(ptc_path)
    assert source["run"] == "FM_PTC_RUN" and source["obsids"] == [2000, 2091]
    for (ccd, q), gain in gains.items():
        assert record["ccds"][f"CCD{ccd}"][q]["gain_e_per_adu_used"] == gain
    assert "PTC01 result" in (results / "D11" / "DARK01" / "report.md").read_text()


def test_the_campaign_gain_wins_over_a_result(dark_day, tmp_path):
    results = tmp_path / "results"
    _ptc_result(results, {(1, "E"): 3.0})
    gains = {f"CCD{c}": {q: 3.4 for q in QUADRANTS} for c in (1, 2, 3)}
    PipelineRun(_campaign(dark_day, results, ["DARK01"], calproducts={"gains": gains}),
                RunOptions(session="D11")).run_aim()
    record = json.loads((results / "D11" / "DARK01" / "result.json").read_text())
    assert record["values"]["calproducts"]["gain"]["origin"] == "campaign"
    assert record["ccds"]["CCD1"]["E"]["gain_e_per_adu_used"] == 3.4
    assert "MISSCALPROD" not in record["flags"]


def test_a_missing_required_product_is_flagged_once_with_the_nominal(dark_day, tmp_path):
    results = tmp_path / "results"
    PipelineRun(_campaign(dark_day, results, ["DARK01"]), RunOptions(session="D11")).run_aim()
    record = json.loads((results / "D11" / "DARK01" / "result.json").read_text())
    [reason] = [r for r in record["flag_reasons"] if r["flag"] == "MISSCALPROD"]
    assert "nominal 3.3 e-/ADU" in reason["reason"]
    assert record["ccds"]["CCD2"]["G"]["gain_e_per_adu_used"] == 3.3
    assert "## Calibration products used" in (results / "D11" / "DARK01" / "report.md").read_text()


def test_limit_fields_need_a_unit():
    @dataclass(frozen=True)
    class Good(GenericLimits):
        threshold_adu: float = limit(3.0, "ADU", "a threshold")

    assert limit_specs(Good)["threshold_adu"].unit == "ADU"
    assert limit_specs(Good)["ron_adu"].default == (0.86, 1.44)


# -- what the generic check holds to the RON limits ------------------------------------------------

def _readout_flags(family_name: str) -> list[str]:
    """RON_OOL reasons of the generic check on frames whose prescan is quiet (1.2 ADU) and whose
    overscan is not (3 ADU, as after an exposed image: the charge its transfer left behind)."""
    from types import SimpleNamespace

    from engine.formats.geometry import SMALL
    from engine.tasks.check import check_readout
    from engine.tasks.flags import FlagBook
    from engine.tasks.measures import FrameStats, QuadrantStats
    from engine.tasks.stats import RegionStats

    quadrant = QuadrantStats(RegionStats(2700, 1.2, 2700), RegionStats(2700, 1.2, 2700), RegionStats(2700, 3.0, 2700),
                             0, 0)
    frames = {(1000 + i, 1): FrameStats(SMALL, {q: quadrant for q in QUADRANTS}) for i in range(3)}
    family = registry.family(family_name)
    ctx = SimpleNamespace(ccds=(1,), flags=FlagBook(), family=family, limits=family.limits(), log=None,
                          campaign=SimpleNamespace(nominal_offset=lambda ccd, q: 2700.0),
                          set_value=lambda *args: None)
    check_readout(ctx, frames)
    return [r.reason for r in ctx.flags.reasons("RON_OOL")]


def test_the_overscan_noise_is_checked_for_dark_frames_only():
    assert len(_readout_flags("bias")) == 4 and all(r.startswith("overscan RON 3.000") for r in _readout_flags("bias"))
    for illuminated in ("flat", "ptc", "nl", "bf", "tp", "persist"):
        assert _readout_flags(illuminated) == [], illuminated
