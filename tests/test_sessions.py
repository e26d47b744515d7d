"""The session builder reproduces the cookbook's NOSTROMO session folders and refuses ambiguous scripts."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from engine.campaign.scripts import OUTPUT_MARKER, OutputFolderError, load_script_inputs, write_scripts
from engine.campaign.sessions import build_sessions, load_session_inputs
from engine.cli.main import main
from engine.formats.tomlfile import ConfigError
from engine.paths import configs_dir

EXAMPLE = configs_dir() / "examples" / "nostromo"
SCRIPTS = "Scripts_NOSTROMO_APR19_W18"
SEQUENCES = "SEQUENCES_NOSTROMO_APR19_W18"

# The cookbook's vis_mksession.py output: each session's scripts, in order.
COOKBOOK_SEQUENCES = {
    "D11": """\
vis_CalCamp_BIAS01_01Apr19_v7.5.X.xlsx
vis_CalCamp_BIAS02_01Apr19_v7.5.X.xlsx
vis_CalCamp_CHINJ01_01Apr19_v7.5.X.xlsx
vis_CalCamp_CHINJ02_01Apr19_v7.5.X.xlsx
vis_CalCamp_TP01_01Apr19_v7.5.X.xlsx
""",
    "D00": """\
vis_CalCamp_FOCUS00_800_01Apr19_v7.5.X.xlsx
""",
}

# The cookbook's `find SEQUENCES_NOSTROMO_APR19_W18/` (in no particular order).
COOKBOOK_FIND = """\
SEQUENCES_NOSTROMO_APR19_W18/D11
SEQUENCES_NOSTROMO_APR19_W18/D11/vis_CalCamp_BIAS01_01Apr19_v7.5.X.xlsx
SEQUENCES_NOSTROMO_APR19_W18/D11/vis_CalCamp_CHINJ02_01Apr19_v7.5.X.xlsx
SEQUENCES_NOSTROMO_APR19_W18/D11/vis_CalCamp_CHINJ01_01Apr19_v7.5.X.xlsx
SEQUENCES_NOSTROMO_APR19_W18/D11/vis_CalCamp_BIAS02_01Apr19_v7.5.X.xlsx
SEQUENCES_NOSTROMO_APR19_W18/D11/TEST_SEQUENCE_D11.txt
SEQUENCES_NOSTROMO_APR19_W18/D11/vis_CalCamp_TP01_01Apr19_v7.5.X.xlsx
SEQUENCES_NOSTROMO_APR19_W18/D00
SEQUENCES_NOSTROMO_APR19_W18/D00/TEST_SEQUENCE_D00.txt
SEQUENCES_NOSTROMO_APR19_W18/D00/vis_CalCamp_FOCUS00_800_01Apr19_v7.5.X.xlsx
""".split()


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The shipped NOSTROMO inputs with their scripts written, in a folder the test may change."""
    for name in ("scripts.toml", "sessions.toml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    write_scripts(load_script_inputs(tmp_path / "scripts.toml"))
    return tmp_path


def write(folder: Path, text: str, name: str = "sessions.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def test_nostromo_sessions_match_the_cookbook(example: Path) -> None:
    built = build_sessions(load_session_inputs(example / "sessions.toml"))
    assert built.folder == example / SEQUENCES
    found = sorted(str(p.relative_to(example)) for p in (example / SEQUENCES).rglob("*"))
    assert found == sorted(COOKBOOK_FIND + [f"{SEQUENCES}/{OUTPUT_MARKER}"])  # + what we wrote, for --force
    for session, expected in COOKBOOK_SEQUENCES.items():
        lines = (example / SEQUENCES / session / f"TEST_SEQUENCE_{session}.txt").read_text().splitlines()
        assert lines == expected.splitlines()
        for name in lines:  # copies, byte for byte
            assert (example / SEQUENCES / session / name).read_bytes() == (example / SCRIPTS / name).read_bytes()


def test_cli_prints_the_sessions_and_json(example: Path, capsys) -> None:
    assert main(["sessions", str(example / "sessions.toml")]) == 0
    out = capsys.readouterr().out
    assert "session: D00" in out and "  vis_CalCamp_TP01_01Apr19_v7.5.X.xlsx" in out
    assert main(["sessions", str(example / "sessions.toml"), "--json", "--force"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in report["sessions"]] == ["D00", "D11"]
    assert report["sessions"][1]["scripts"] == COOKBOOK_SEQUENCES["D11"].split()
    assert report["sessions"][0]["sequence"] == "TEST_SEQUENCE_D00.txt"


def test_a_duplicate_script_halts_and_writes_nothing(example: Path, capsys) -> None:
    scripts = example / SCRIPTS
    shutil.copy(scripts / "vis_CalCamp_CHINJ01_01Apr19_v7.5.X.xlsx", scripts / "vis_CalCamp_CHINJ01_02Apr19_v7.5.X.xlsx")
    with pytest.raises(ConfigError) as caught:
        load_session_inputs(example / "sessions.toml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.key) == (11, "sessions.D11[2]")
    assert "2 scripts for CHINJ01" in problem.message and "02Apr19" in problem.message
    assert main(["sessions", str(example / "sessions.toml")]) == 1
    err = capsys.readouterr().err
    assert "sessions.toml:11: sessions.D11[2]: 2 scripts for CHINJ01" in err and "Traceback" not in err
    assert not (example / SEQUENCES).exists()


def test_a_missing_script_halts_and_writes_nothing(example: Path) -> None:
    inputs = load_session_inputs(example / "sessions.toml")
    (example / SCRIPTS / "vis_CalCamp_TP01_01Apr19_v7.5.X.xlsx").unlink()
    (example / SCRIPTS / "vis_CalCamp_FOCUS00_800_01Apr19_v7.5.X.xlsx").unlink()
    with pytest.raises(ConfigError) as caught:
        build_sessions(inputs)  # checked again at build time: the folder changed since reading
    messages = [str(p) for p in caught.value.problems]
    assert len(messages) == 2
    assert ":10: sessions.D00[0]: no script for FOCUS00_800" in messages[0]
    assert ":11: sessions.D11[4]: no script for TP01" in messages[1]
    assert sorted(p.name for p in example.iterdir()) == [SCRIPTS, "scripts.toml", "sessions.toml"]


def test_rebuilding_refuses_without_force_and_leaves_the_folder_untouched(example: Path) -> None:
    inputs = load_session_inputs(example / "sessions.toml")
    build_sessions(inputs)
    before = tree(example / SEQUENCES)
    with pytest.raises(OutputFolderError, match="not empty"):
        build_sessions(inputs)
    assert main(["sessions", str(example / "sessions.toml")]) == 1
    assert tree(example / SEQUENCES) == before
    build_sessions(inputs, force=True)
    assert tree(example / SEQUENCES) == before


def test_force_keeps_what_the_builder_did_not_write(example: Path, capsys) -> None:
    inputs = load_session_inputs(example / "sessions.toml")
    build_sessions(inputs)
    (example / SEQUENCES / "D11" / "shift_notes.txt").write_text("CCD2 looked odd at 03:00")
    before = tree(example / SEQUENCES)
    assert main(["sessions", str(example / "sessions.toml"), "--force"]) == 1
    err = capsys.readouterr().err
    assert "files vison-engine sessions did not write: D11/shift_notes.txt" in err
    assert tree(example / SEQUENCES) == before


def test_force_refuses_a_folder_the_builder_did_not_create(example: Path) -> None:
    (example / SEQUENCES / "D11").mkdir(parents=True)
    (example / SEQUENCES / "D11" / "TEST_SEQUENCE_D11.txt").write_text("a sequence typed by hand\n")
    before = tree(example / SEQUENCES)
    with pytest.raises(OutputFolderError, match="was not written by vison-engine sessions"):
        build_sessions(load_session_inputs(example / "sessions.toml"), force=True)
    assert tree(example / SEQUENCES) == before


def test_force_does_not_replace_a_scripts_folder(example: Path) -> None:
    scripts_copy = example / "old_scripts"
    shutil.copytree(example / SCRIPTS, scripts_copy)
    path = write(example, (example / "sessions.toml").read_text().replace(SEQUENCES, "old_scripts"))
    with pytest.raises(OutputFolderError, match="written by vison-engine scripts, not vison-engine sessions"):
        build_sessions(load_session_inputs(path), force=True)
    assert sorted(p.name for p in scripts_copy.iterdir()) == sorted(p.name for p in (example / SCRIPTS).iterdir())


def test_comments_everywhere_are_fine(example: Path) -> None:
    path = write(example, """
        # where the scripts are
        scripts = "Scripts_NOSTROMO_APR19_W18"  # written by vison-engine scripts
        output = "OUT"  # the sessions
        [sessions]  # one per line
        # D00 first
        D00 = ["FOCUS00_800"]  # focus
        D11 = [
            "BIAS02",   # reverse readout
            # "BIAS01",
            "tp01",     # case does not matter
        ]  # end of D11
    """, name="commented.toml")
    built = build_sessions(load_session_inputs(path))
    assert [(s.name, s.scripts) for s in built.sessions] == [
        ("D00", ("vis_CalCamp_FOCUS00_800_01Apr19_v7.5.X.xlsx",)),
        ("D11", ("vis_CalCamp_BIAS02_01Apr19_v7.5.X.xlsx", "vis_CalCamp_TP01_01Apr19_v7.5.X.xlsx")),
    ]


def test_wrong_keys_and_names_give_file_line_and_key_all_at_once(example: Path) -> None:
    path = write(example, """
        scripts = "Scripts_NOSTROMO_APR19_W18"
        outpath = "OUT"
        [sessions]
        D00 = ["FOCUS00"]
        D11 = ["BIAS01", "BIAS1", "BIAS01", "PTC01"]
    """, name="wrong.toml")
    with pytest.raises(ConfigError) as caught:
        load_session_inputs(path)
    found = {(p.line, p.key): p.message for p in caught.value.problems}
    assert "did you mean 'output'" in found[(2, "outpath")]
    assert "missing required key 'output'" in found[(None, "output")]
    assert "generic handle" in found[(4, "sessions.D00[0]")]
    assert "did you mean BIAS01" in found[(5, "sessions.D11[1]")]
    assert "listed twice" in found[(5, "sessions.D11[2]")]
    assert "no script for PTC01" in found[(5, "sessions.D11[3]")]
    assert all(Path(p.path) == path for p in caught.value.problems)


def test_missing_scripts_folder_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, """
        scripts = "nowhere"
        output = "OUT"
        [sessions]
        D00 = ["FOCUS00_800"]
    """)
    with pytest.raises(ConfigError, match=r"sessions.toml:1: scripts: scripts folder .*nowhere does not exist"):
        load_session_inputs(path)


def test_template_parses(tmp_path: Path) -> None:
    shutil.copy(configs_dir() / "sessions_template.toml", tmp_path / "sessions.toml")
    with pytest.raises(ConfigError) as caught:  # its scripts folder is a placeholder
        load_session_inputs(tmp_path / "sessions.toml")
    assert [p.key for p in caught.value.problems] == ["scripts"]
