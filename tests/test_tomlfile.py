"""One TOML checker for every config file: the same "did you mean" for the same typo, deep nesting refused."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Callable

import pytest

from engine.campaign.chamber import ChamberError, load_chamber
from engine.campaign.config import load_campaign
from engine.campaign.scripts import load_script_inputs
from engine.campaign.sessions import load_session_inputs
from engine.formats.hklimits import load_hk_limits
from engine.formats.tomlfile import ConfigError, TomlChecker, parse_toml_text
from engine.monitor.settings import load_monitor_settings


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# Each config file with one key written as `{key}`, so that a test can misspell it, and the
# key's name there. The rest of each file may hold other problems: only the key's is looked at.
def campaign(folder: Path, key: str) -> Path:
    (folder / "data").mkdir(exist_ok=True)
    return write(folder, "campaign.toml", f"""
        [campaign]
        block = "NOSTROMO"
        [paths]
        data = "data"
        results = "results"
        [watch]
        {key} = "auto"
        [sessions.D11]
        tests = ["BIAS01"]
    """)


def scripts(folder: Path, key: str) -> Path:
    return write(folder, "scripts.toml", f"""
        elvis = "7.5.X"
        {key} = "B_NOSTROMO"
        output = "out"
        [equipment]
        sn_roe = "FM15"
        [write]
        BIAS01 = true
    """)


def sessions(folder: Path, key: str) -> Path:
    return write(folder, "sessions.toml", f"""
        scripts = "Scripts"
        {key} = "OUT"
        [sessions]
        D11 = ["BIAS01"]
    """)


def monitor(folder: Path, key: str) -> Path:
    return write(folder, "monitor.toml", f"""
        [monitor]
        {key} = 2
    """)


def hk_limits(folder: Path, key: str) -> Path:
    return write(folder, "hk_limits.toml", f"""
        [limits.CCD1_TEMP_T]
        P = {{ kind = "A", lo = -121, hi = -119 }}
        S = {{ kind = "A", lo = -133, hi = 35 }}
        [settings]
        {key} = -240.0
    """)


FILES: list[tuple[Callable[[Path, str], Path], str, Callable[[Path], object]]] = [
    (campaign, "polling", load_campaign),
    (scripts, "chamber", load_script_inputs),
    (sessions, "output", load_session_inputs),
    (monitor, "settle_seconds", load_monitor_settings),
    (hk_limits, "disconnected_temperature", load_hk_limits),
]
TYPOS = {
    "two letters swapped": lambda key: key[:-2] + key[-1] + key[-2],
    "a capital": lambda key: key.capitalize(),
    "a letter left out": lambda key: key[:-1],
    "the first letters only": lambda key: key[:5],
}


def problems(load: Callable[[Path], object], path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return {p.key: p.message for p in caught.value.problems}


@pytest.mark.parametrize("typo", TYPOS.values(), ids=list(TYPOS))
@pytest.mark.parametrize("write_file, key, load", FILES, ids=[key for _, key, _ in FILES])
def test_every_config_file_suggests_the_key_meant(tmp_path, write_file, key, load, typo) -> None:
    misspelt = typo(key)
    found = problems(load, write_file(tmp_path, misspelt))
    message = next(text for name, text in found.items() if name.split(".")[-1] == misspelt)
    assert message.startswith(f"unknown key {misspelt!r}; did you mean {key!r}?")


def test_the_same_typo_reads_the_same_in_every_file(tmp_path) -> None:
    # the hint and the list of the table's keys come from one policy: only the names differ
    shapes = set()
    for index, (write_file, key, load) in enumerate(FILES):
        folder = tmp_path / str(index)
        folder.mkdir()
        message = next(text for name, text in problems(load, write_file(folder, key[:-1])).items()
                       if name.endswith(key[:-1]))
        shapes.add(re.sub(r"one of: [\w, ]+\)$", "one of: LIST)",
                          message.replace(repr(key[:-1]), "TYPO").replace(repr(key), "KEY")))
    assert shapes == {"unknown key TYPO; did you mean KEY? (expected one of: LIST)"}


DEEP = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize("write_file, key, load", FILES, ids=[key for _, key, _ in FILES])
def test_deeply_nested_arrays_are_one_line_naming_file_and_key(tmp_path, write_file, key, load) -> None:
    path = write_file(tmp_path, key)
    path.write_text(re.sub(rf"^{key} = .*$", f"{key} = {DEEP}", path.read_text(), flags=re.M))
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert re.fullmatch(rf"{re.escape(str(path))}:\d+: ([\w.]+\.)?{key}: arrays or inline tables nested more "
                        rf"than 32 levels deep; no config needs that many", str(caught.value))


def test_deeply_nested_inline_tables_and_chamber_profiles_too(tmp_path) -> None:
    text = "a = 1\nb = " + "{ c = " * 600 + "1" + " }" * 600 + "\n"
    with pytest.raises(ConfigError, match=r"^deep.toml:2: b: arrays or inline tables nested more than 32 levels"):
        parse_toml_text(text, "deep.toml")
    profile = write(tmp_path, "deep_chamber.toml", f"name = \"DEEP\"\nfilter_wheel = {DEEP}\n")
    with pytest.raises(ChamberError, match=r"deep_chamber.toml:2: filter_wheel: arrays or inline tables nested"):
        load_chamber(profile)


def test_a_few_levels_of_nesting_are_fine() -> None:
    assert parse_toml_text("a = [[1, 2], [3, [4, { b = [5] }]]]\n").data["a"][1][1][1] == {"b": [5]}


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    doc = parse_toml_text('[t]\nn = "x"\nflag = 1\nmode = "fast"\nr = [3, 1]\nextra = 2\n', "f.toml")
    check = TomlChecker(doc)
    table = check.table(doc.data["t"], ("t",), ("n", "flag", "mode", "r", "name"))
    assert check.number(table, ("t",), "n", 5, minimum=0) == 5  # wrong: the default comes back
    assert check.boolean(table, ("t",), "flag", False) is False
    assert check.choice(table, ("t",), "mode", ("slow", "safe"), "slow") == "slow"
    assert check.range(table["r"], ("t", "r"), expected="a range [low, high]") is None
    assert check.string(table, ("t",), "name", required=True, example='name = "x"') is None
    with pytest.raises(ConfigError) as caught:
        check.raise_if_any()
    assert str(caught.value).splitlines() == [
        "f.toml:1: t.name: missing required key 'name' in [t]; e.g. name = \"x\"",
        "f.toml:2: t.n: expected a number >= 0; got a string ('x')",
        "f.toml:3: t.flag: expected true or false; got an integer (1)",
        "f.toml:4: t.mode: expected one of 'slow', 'safe'; got 'fast'",
        "f.toml:5: t.r: range reversed (3 > 1); expected [low, high] with low <= high",
        "f.toml:6: t.extra: unknown key 'extra' (expected one of: n, flag, mode, r, name)",
    ]


def test_monitor_limits_problems_are_located_in_the_file_that_wrote_them(tmp_path) -> None:
    table = hk_limits(tmp_path, "disconnected_temperature")
    table.write_text(table.read_text().replace("lo = -133", "lo = 40"))  # S reversed in the table
    settings = write(tmp_path, "monitor.toml", f"""
        [monitor]
        limits_file = "{table.name}"
        [limits.CCD1_TEMP_T]
        P = {{ kind = "A", lo = 5, hi = 1 }}
    """)
    with pytest.raises(ConfigError) as caught:
        load_monitor_settings(settings)
    assert [str(p) for p in caught.value.problems] == [
        f"{table}:3: limits.CCD1_TEMP_T.S: expected lo <= hi, found lo = 40, hi = 35"]
    table.write_text(table.read_text().replace("lo = 40", "lo = -133"))
    with pytest.raises(ConfigError) as caught:
        load_monitor_settings(settings)
    assert [str(p) for p in caught.value.problems] == [
        f"{settings}:4: limits.CCD1_TEMP_T.P: expected lo <= hi, found lo = 5, hi = 1"]
