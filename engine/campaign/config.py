"""The campaign config: which block, chamber, hardware, data folders and sessions a run works on.

It replaces vison's Python config script (`vison_config_*.py`: BLOCKID, CHAMBER, diffvalues,
inCDPs, resroot, test_specifics with todo_flags). It is a TOML file, never executed, validated in
one pass: every problem is reported at once, with file, line, key and what was expected.
See configs/campaign_template.toml for the commented form users copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from engine.formats.names import parse_day_folder
from engine.campaign.executor_spec import ExecutorSpec, parse_executor
from engine.campaign.limits import FamilySchema, GenericLimits, LimitSpec, LimitValue, limit_specs, resolve_limits
from engine.formats.tomlfile import (MISSING, ConfigError, ConfigProblem, TomlChecker, TomlDocument, closest_name,
                                     describe_value, format_key_path, is_int, is_number, load_toml,
                                     unknown_key_message)
from engine.paths import configs_dir

__all__ = [
    "CCD_NAMES", "LIMITS", "POLLING_MODES", "CalProducts", "Campaign", "CampaignInfo", "ConfigError",
    "ConfigProblem", "Hardware", "LimitSpec", "Paths", "RunSettings", "Session", "SessionTest", "WatchSettings",
    "campaign_from_dict", "load_campaign", "quick_campaign",
]

CCD_NAMES = ("CCD1", "CCD2", "CCD3")
POLLING_MODES = ("auto", "events", "polling")
DEFAULT_ELVIS = "7.5.X"  # the ELVIS version of the FM campaign (cookbook: "-v 7.5.X")


# Limits of the generic checks ([limits]); each analysis family declares its own (engine/tasks).
LIMITS: dict[str, LimitSpec] = limit_specs(GenericLimits)


# ---------------------------------------------------------------------------------------------------
# The campaign, as the rest of the engine sees it
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CampaignInfo:
    block: str
    chamber: str | None  # None = the default profile (configs/chambers/default.toml)
    operator: str = ""
    elvis: str = DEFAULT_ELVIS


@dataclass(frozen=True)
class Hardware:
    """Serials the data must carry; None = not checked."""

    roe: str | None = None
    rpsu: str | None = None
    ccd1: str | None = None
    ccd2: str | None = None
    ccd3: str | None = None

    def serials(self) -> dict[str, str]:
        """The given serials keyed as in ELVIS headers / EXP_LOG (sn_roe, sn_ccd1, ...)."""
        given = {"sn_roe": self.roe, "sn_rpsu": self.rpsu, "sn_ccd1": self.ccd1,
                 "sn_ccd2": self.ccd2, "sn_ccd3": self.ccd3}
        return {key: value for key, value in given.items() if value is not None}


@dataclass(frozen=True)
class Paths:
    """Absolute paths (relative ones in the file are taken from the file's folder)."""

    config_dir: Path
    data: Path  # holds the day folders (DD_Mmm_YY)
    results: Path  # session folders go under it
    calproducts: Path | None = None


@dataclass(frozen=True)
class CalProducts:
    """Input calibration products (vison's inCDPs), absolute paths."""

    masks: dict[str, Path] = field(default_factory=dict)  # CCD1..3 -> cosmetics mask
    master_bias: dict[str, Path] = field(default_factory=dict)  # CCD1..3 -> master bias
    flats: dict[int, dict[str, Path]] = field(default_factory=dict)  # nm -> CCD1..3 -> master flat
    gains: dict[str, dict[str, float]] = field(default_factory=dict)  # CCD1..3 -> quadrant -> e-/ADU


@dataclass(frozen=True)
class WatchSettings:
    idle_stop_minutes: int = 240  # stop waiting after this long without a new frame; 0 = never
    polling: str = "auto"  # auto | events | polling (NFS/SMB mounts give no file events)
    poll_seconds: float = 5.0  # look interval when polling


@dataclass(frozen=True)
class RunSettings:
    """[run]: how the pipeline runs the campaign's sessions."""

    executor: ExecutorSpec = field(default_factory=ExecutorSpec)  # local, or dask://HOST:PORT (docs/scaling.md)


@dataclass(frozen=True)
class SessionTest:
    name: str
    obsids: tuple[int, int] | None = None  # [first, last]; None = find them (wait mode)
    subtasks: dict[str, bool] = field(default_factory=dict)  # explicit flags only; others default


@dataclass(frozen=True)
class Session:
    name: str
    day_folder: str | None
    tests: tuple[SessionTest, ...]

    def test(self, name: str) -> SessionTest:
        for entry in self.tests:
            if entry.name == name:
                return entry
        raise KeyError(f"test {name!r} is not in session {self.name} ({', '.join(t.name for t in self.tests)})")


@dataclass(frozen=True)
class Campaign:
    info: CampaignInfo
    hardware: Hardware
    paths: Paths
    sessions: dict[str, Session]
    calproducts: CalProducts = field(default_factory=CalProducts)
    limits: dict[str, LimitValue] = field(default_factory=dict)  # [limits] overrides only
    family_limits: dict[str, dict[str, LimitValue]] = field(default_factory=dict)  # [limits.<family>] overrides
    watch: WatchSettings = field(default_factory=WatchSettings)
    source: Path | None = None  # the config file (None for the command line's quick form)
    offsets: dict[str, dict[str, float]] = field(default_factory=dict)  # block's nominal, CCDn -> Q -> ADU
    run: RunSettings = field(default_factory=RunSettings)

    def session(self, name: str) -> Session:
        try:
            return self.sessions[name]
        except KeyError:
            known = ", ".join(self.sessions) or "none"
            raise KeyError(f"no session {name!r} in the campaign (sessions: {known})") from None

    def limit(self, name: str) -> LimitValue:
        """The campaign's value of a generic-check limit: its [limits] override or vison's default."""
        if name not in LIMITS:
            raise KeyError(f"unknown limit {name!r}; known: {', '.join(LIMITS)}")
        return self.limits.get(name, LIMITS[name].default)

    def limits_for(self, limits_class: type, family: str) -> Any:
        """A family's typed limits: its defaults <- [limits] <- [limits.<family>]."""
        return resolve_limits(limits_class, self.limits, self.family_limits.get(family, {}))

    def nominal_offset(self, ccd: int, quadrant: str) -> float | None:
        """The block's nominal offset of a quadrant: [offsets], else [limits] offset_nominal_adu."""
        value = self.offsets.get(f"CCD{ccd}", {}).get(quadrant)
        if value is None:
            value = self.limits.get("offset_nominal_adu")
        return None if value is None else float(value)

    def day_path(self, session: str, day_folder: str | None = None) -> Path | None:
        """Folder holding a session's frames: the given day folder, else the session's, else None."""
        folder = day_folder or self.session(session).day_folder
        return self.paths.data / folder if folder else None


# ---------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------
def load_campaign(path: str | Path, families: Mapping[str, FamilySchema] | None = None) -> Campaign:
    """Read and validate a campaign TOML file; raises ConfigError listing every problem found.

    `families` (engine.tasks.registry.campaign_schema()) lets sub-task flags and [limits.<family>]
    be checked here with their line numbers; the engine's entry points always pass it."""
    doc = load_toml(path)
    base_dir = Path(os.path.abspath(doc.path)).parent
    return campaign_from_dict(doc.data, base_dir=base_dir, doc=doc, source=Path(os.path.abspath(doc.path)),
                              families=families)


def campaign_from_dict(data: dict, *, base_dir: Path, doc: TomlDocument | None = None,
                       source: Path | None = None, origin: str = "<command line>",
                       families: Mapping[str, FamilySchema] | None = None) -> Campaign:
    """Validate config data (as parsed from TOML) into a Campaign.

    `base_dir` anchors relative paths; `doc` gives line numbers for problems; `origin` names the
    data in messages when there is no file; `families` as for load_campaign.
    """
    checker = _Checker(doc, origin, Path(base_dir), families)
    campaign = checker.campaign(data, source)
    if checker.problems:
        # file order reads best; problems without a line (no file) keep their walk order at the end
        raise ConfigError(sorted(checker.problems, key=lambda p: (p.line is None, p.line or 0)))
    assert campaign is not None
    return campaign


def quick_campaign(data: Path, tests: list[str], obsids: tuple[int, int] | None, results: Path, *,
                   session: str = "QUICK", day_folder: str | None = None, block: str = "UNKNOWN",
                   chamber: str | None = None, elvis: str = DEFAULT_ELVIS,
                   subtasks: dict[str, bool] | None = None,
                   families: Mapping[str, FamilySchema] | None = None) -> Campaign:
    """A one-session campaign from command-line values, validated like a file.

    `data` is the data root or, if its name is a day folder (DD_Mmm_YY, e.g. 12_Mar_19) and no
    `day_folder` is given, the day folder itself. `obsids` and `subtasks` apply to every test.
    """
    data = Path(data)
    if day_folder is None and _is_day_folder(data.name):
        data, day_folder = data.parent, data.name
    entry_extras: dict[str, Any] = {}
    if obsids is not None:
        entry_extras["obsids"] = list(obsids)
    if subtasks:
        entry_extras["subtasks"] = dict(subtasks)
    session_table: dict[str, Any] = {"tests": [{"name": name, **entry_extras} for name in tests]}
    if day_folder:
        session_table["day_folder"] = day_folder
    campaign_table: dict[str, Any] = {"block": block, "elvis": elvis}
    if chamber:
        campaign_table["chamber"] = chamber
    config = {
        "campaign": campaign_table,
        "paths": {"data": str(data), "results": str(results)},
        "sessions": {session: session_table},
    }
    return campaign_from_dict(config, base_dir=Path.cwd(), families=families)


# ---------------------------------------------------------------------------------------------------
# Validation: walks the data, collects problems, builds the dataclasses
# ---------------------------------------------------------------------------------------------------
_TOP_KEYS = ("campaign", "hardware", "paths", "calproducts", "offsets", "limits", "watch", "run", "sessions")
_CAMPAIGN_KEYS = ("block", "chamber", "operator", "elvis")
_HARDWARE_KEYS = ("roe", "rpsu", "ccd1", "ccd2", "ccd3")
_PATHS_KEYS = ("data", "results", "calproducts")
_CALPRODUCTS_KEYS = ("masks", "master_bias", "flats", "gains")
_QUADRANT_KEYS = ("E", "F", "G", "H")
_WATCH_KEYS = ("idle_stop_minutes", "polling", "poll_seconds")
_RUN_KEYS = ("executor",)
_SESSION_KEYS = ("day_folder", "tests")
_TEST_KEYS = ("name", "obsids", "subtasks")
_MISSING = MISSING


class _Checker(TomlChecker):
    """The campaign's schema, read through the shared checker's getters."""

    def __init__(self, doc: TomlDocument | None, origin: str, base_dir: Path,
                 families: Mapping[str, FamilySchema] | None = None):
        self.families = families  # None: sub-task names and family limits are not known here
        self.doc = doc
        self.origin = doc.path if doc is not None else origin
        self.base_dir = base_dir
        self.problems: list[ConfigProblem] = []

    # -- sections -------------------------------------------------------------------------------
    def campaign(self, data: Any, source: Path | None) -> Campaign | None:
        data = self.table(data, (), _TOP_KEYS, '[campaign]')
        info = self.info(self.required(data, (), "campaign", '[campaign] with block = "NOSTROMO"'))
        hardware = self.hardware(data.get("hardware", {}))
        paths = self.paths(self.required(data, (), "paths", '[paths] with data = "data", results = "results"'))
        calproducts = self.calproducts(data.get("calproducts", {}), paths)
        limits, family_limits = self.limits(data.get("limits", {}))
        offsets = self.per_quadrant_numbers(data.get("offsets", {}), ("offsets",), "offsets",
                                            "{ E = 2713, F = 2671, G = 2831, H = 2571 }", low=0.0, high=65535.0)
        watch = self.watch(data.get("watch", {}))
        run = self.run(data.get("run", {}))
        sessions = self.sessions(self.required(data, (), "sessions", '[sessions.D11] with tests = ["BIAS01"]'))
        if self.problems or info is None or paths is None:
            return None
        return Campaign(info=info, hardware=hardware, paths=paths, sessions=sessions,
                        calproducts=calproducts, limits=limits, family_limits=family_limits, watch=watch,
                        source=source, offsets=offsets, run=run)

    def info(self, table: Any) -> CampaignInfo | None:
        if table is _MISSING:
            return None
        key_path = ("campaign",)
        table = self.table(table, key_path, _CAMPAIGN_KEYS, '[campaign]')
        block = self.string(table, key_path, "block", required=True, example='block = "NOSTROMO"')
        chamber = self.string(table, key_path, "chamber", example='chamber = "B_NOSTROMO"')
        if chamber is not None:
            self.check_chamber(chamber, key_path + ("chamber",))
        operator = self.string(table, key_path, "operator", example='operator = "raf"') or ""
        elvis = self.string(table, key_path, "elvis", example='elvis = "7.5.X"') or DEFAULT_ELVIS
        return CampaignInfo(block=block or "", chamber=chamber, operator=operator, elvis=elvis)

    def check_chamber(self, name: str, key_path: tuple) -> None:
        folder = configs_dir() / "chambers"
        if "/" in name or "\\" in name:
            self.problem(key_path, f"a chamber is named, not a path (a profile in {folder}); got {name!r}")
            return
        if (folder / f"{name}.toml").is_file():
            return
        known = sorted(p.stem for p in folder.glob("*.toml"))
        message = f"unknown chamber {name!r}: no profile {folder / (name + '.toml')}"
        close = closest_name(name, known)
        if close:
            message += f"; did you mean {close!r}?"
        message += f" (known chambers: {', '.join(known) or 'none'})"
        self.problem(key_path, message)

    def hardware(self, table: Any) -> Hardware:
        key_path = ("hardware",)
        table = self.table(table, key_path, _HARDWARE_KEYS, '[hardware] with roe = "FM14"')
        serials = {key: self.string(table, key_path, key, example=f'{key} = "FM14"' if key in ("roe", "rpsu")
                                    else f'{key} = "14888-88-81"') for key in _HARDWARE_KEYS}
        return Hardware(**serials)

    def paths(self, table: Any) -> Paths | None:
        if table is _MISSING:
            return None
        key_path = ("paths",)
        table = self.table(table, key_path, _PATHS_KEYS, '[paths]')
        data = self.path(table, key_path, "data", required=True, example='data = "data"')
        results = self.path(table, key_path, "results", required=True, example='results = "results"')
        calproducts = self.path(table, key_path, "calproducts", example='calproducts = "calproducts"')
        if data is not None and not data.is_dir():
            self.problem(key_path + ("data",), f"data folder {data} does not exist (it must hold the day folders)")
        if results is not None:
            if results.exists() and not results.is_dir():
                self.problem(key_path + ("results",), f"results path {results} exists and is not a folder")
            elif not results.parent.is_dir():
                self.problem(key_path + ("results",),
                             f"results folder's parent {results.parent} does not exist (the results folder "
                             "itself is created when needed)")
            place = self.results_place_problem(results, data)
            if place:
                self.problem(key_path + ("results",), place)
        if calproducts is not None and not calproducts.is_dir():
            self.problem(key_path + ("calproducts",), f"calproducts folder {calproducts} does not exist")
        if data is None or results is None:
            return None
        return Paths(config_dir=self.base_dir, data=data, results=results, calproducts=calproducts)

    @staticmethod
    def results_place_problem(results: Path, data: Path | None) -> str | None:
        """Why `results` may not hold a campaign's results, or None.

        Runs, clean-up and re-runs create, move and remove folders under the results root: it
        must be a folder of its own, never /, the home folder or above it, nor in the raw data.
        """
        real = Path(os.path.realpath(results))
        home = Path(os.path.realpath(os.path.expanduser("~")))
        expected = 'expected a folder of its own, e.g. results = "results" beside the data folder'
        if real == Path(real.anchor):
            return f"results folder {results} is the filesystem root; {expected}"
        if real == home or real in home.parents:
            where = "is your home folder" if real == home else "holds your home folder"
            return f"results folder {results} {where}; {expected}"
        if data is not None:
            raw = Path(os.path.realpath(data))
            if real == raw or raw in real.parents:
                first = real.relative_to(raw).parts[:1]
                where = ("is the data folder" if real == raw else
                         f"lies inside the day folder {first[0]}" if _is_day_folder(first[0]) else
                         "lies inside the data folder")
                return (f"results folder {results} {where} ({data}): the raw data must never hold results; "
                        f"{expected}")
        return None

    def calproducts(self, table: Any, paths: Paths | None) -> CalProducts:
        key_path = ("calproducts",)
        table = self.table(table, key_path, _CALPRODUCTS_KEYS, '[calproducts]')
        base = paths.calproducts if paths is not None and paths.calproducts is not None else self.base_dir
        masks = self.per_ccd_files(table.get("masks", {}), key_path + ("masks",), base)
        master_bias = self.per_ccd_files(table.get("master_bias", {}), key_path + ("master_bias",), base)
        flats: dict[int, dict[str, Path]] = {}
        flats_path = key_path + ("flats",)
        flats_table = self.table(table.get("flats", {}), flats_path, None,
                                 '[calproducts.flats.800] with CCD1 = "flats/EUC_FF_800nm_CCD1.fits"')
        for wavelength, per_ccd in flats_table.items():
            if not (wavelength.isdigit() and int(wavelength) > 0):
                self.problem(flats_path + (wavelength,),
                             f"flats are keyed by wavelength in nm (e.g. [calproducts.flats.800]); got {wavelength!r}")
                continue
            flats[int(wavelength)] = self.per_ccd_files(per_ccd, flats_path + (wavelength,), base)
        gains = self.per_quadrant_numbers(table.get("gains", {}), key_path + ("gains",), "gains",
                                          "{ E = 3.3, F = 3.3, G = 3.3, H = 3.3 }", low=0.5, high=10.0)
        return CalProducts(masks=masks, master_bias=master_bias, flats=flats, gains=gains)

    def per_quadrant_numbers(self, table: Any, key_path: tuple, what: str, example: str, *, low: float,
                             high: float) -> dict[str, dict[str, float]]:
        """CCD1..3 -> E..H -> number, e.g. a block's nominal offsets or the gains from a PTC."""
        table = self.table(table, key_path, CCD_NAMES, f"[{format_key_path(key_path)}] with CCD1 = {example}")
        values: dict[str, dict[str, float]] = {}
        for ccd, per_quadrant in table.items():
            if ccd not in CCD_NAMES:
                continue  # already reported as unknown
            per_quadrant = self.table(per_quadrant, key_path + (ccd,), _QUADRANT_KEYS, f"{ccd} = {example}")
            for quadrant in per_quadrant:
                if quadrant not in _QUADRANT_KEYS:
                    continue
                value = self.number(per_quadrant, key_path + (ccd,), quadrant, minimum=low, maximum=high,
                                    expected=f"a number between {low:g} and {high:g} ({what})")
                if value is not None:
                    values.setdefault(ccd, {})[quadrant] = float(value)
        return values

    def per_ccd_files(self, table: Any, key_path: tuple, base: Path) -> dict[str, Path]:
        table = self.table(table, key_path, CCD_NAMES, '{ CCD1 = "masks/EUC_MASK_BLOCK_CCD1.fits", ... }')
        files = {}
        for ccd in CCD_NAMES:
            path = self.path(table, key_path, ccd, base=base, example=f'{ccd} = "masks/EUC_MASK_BLOCK_{ccd}.fits"')
            if path is None:
                continue
            if not path.is_file():
                self.problem(key_path + (ccd,), f"file {path} does not exist")
            files[ccd] = path
        return files

    def limits(self, table: Any) -> tuple[dict[str, LimitValue], dict[str, dict[str, LimitValue]]]:
        """([limits] overrides, {family: [limits.<family>] overrides}).

        [limits] holds the generic checks' limits and, when the families are known, any family's
        limit (it then applies to every family declaring it); [limits.<family>] one family's."""
        key_path = ("limits",)
        families = self.families or {}
        campaign_wide = dict(LIMITS)
        for schema in families.values():
            for name, spec in schema.limits.items():
                campaign_wide.setdefault(name, spec)
        known = (*campaign_wide, *families)
        table = self.table(table, key_path, None, "[limits] with ron_adu = [0.86, 1.44]")
        overrides: dict[str, LimitValue] = {}
        per_family: dict[str, dict[str, LimitValue]] = {}
        for name, value in table.items():
            if isinstance(value, dict):
                if self.families is not None and name not in families:
                    self.problem(key_path + (name,), _unknown_key_message(name, tuple(families), what="family"))
                    continue
                specs = families[name].limits if name in families else None
                per_family[name] = self.limit_table(value, key_path + (name,), specs, owner=name)
            elif name in campaign_wide:
                parsed = self.limit_value(campaign_wide[name], value, key_path + (name,))
                if parsed is not None:
                    overrides[name] = parsed
            else:
                self.problem(key_path + (name,), _unknown_key_message(name, known, what="limit"))
        return overrides, per_family

    def limit_table(self, table: dict, key_path: tuple, specs: Mapping[str, LimitSpec] | None,
                    owner: str) -> dict[str, LimitValue]:
        """[limits.<family>]: each key a limit the family declares (any number or range if the
        families were not given to the checker: the task resolving them says what is unknown)."""
        values: dict[str, LimitValue] = {}
        for name, value in table.items():
            if specs is None:
                spec = LimitSpec(name, "", (0.0, 0.0) if isinstance(value, list) else 0.0, "")
            elif name in specs:
                spec = specs[name]
            else:
                self.problem(key_path + (name,), _unknown_key_message(name, tuple(specs), what="limit",
                                                                      owner=f"family {owner}"))
                continue
            parsed = self.limit_value(spec, value, key_path + (name,))
            if parsed is not None:
                values[name] = parsed
        return values

    def limit_value(self, spec: LimitSpec, value: Any, key_path: tuple) -> LimitValue | None:
        parsed, expected = spec.parse(value)
        if expected is not None and spec.kind == "range" and isinstance(value, list) and len(value) == 2 \
                and all(_is_number(v) for v in value):
            self.problem(key_path, f"range reversed ({value[0]} > {value[1]}); expected [low, high] with low <= high")
        elif expected is not None:
            self.wrong_type(key_path, value, expected)
        return parsed

    def watch(self, table: Any) -> WatchSettings:
        key_path = ("watch",)
        table = self.table(table, key_path, _WATCH_KEYS, '[watch]')
        defaults = WatchSettings()
        idle = self.integer(table, key_path, "idle_stop_minutes", defaults.idle_stop_minutes, minimum=0,
                            expected="a whole number of minutes >= 0 (0 = wait forever), e.g. idle_stop_minutes = 240")
        polling = self.choice(table, key_path, "polling", POLLING_MODES, defaults.polling,
                              hint='(use "polling" on NFS/SMB mounts)')
        poll_seconds = self.number(table, key_path, "poll_seconds", defaults.poll_seconds, minimum=0, strict=True,
                                   expected="a number of seconds > 0, e.g. poll_seconds = 5")
        return WatchSettings(idle_stop_minutes=idle, polling=polling, poll_seconds=float(poll_seconds))

    def run(self, table: Any) -> RunSettings:
        key_path = ("run",)
        table = self.table(table, key_path, _RUN_KEYS, '[run] with executor = "local"')
        text = self.string(table, key_path, "executor", example='executor = "dask://lab-srv:8786"')
        if text is None:
            return RunSettings()
        try:
            return RunSettings(executor=parse_executor(text))
        except ValueError as exc:
            self.problem(key_path + ("executor",), str(exc))
            return RunSettings()

    # -- sessions and their tests ---------------------------------------------------------------
    def sessions(self, table: Any) -> dict[str, Session]:
        if table is _MISSING:
            return {}
        key_path = ("sessions",)
        table = self.table(table, key_path, None, '[sessions.D11] with tests = ["BIAS01"]')
        if not table:
            self.problem(key_path, 'no sessions defined; add one, e.g. [sessions.D11] with tests = ["BIAS01"]')
        sessions = {}
        for name, session_table in table.items():
            if not name.strip() or any(c in name for c in "/\\") or name in (".", ".."):
                self.problem(key_path + (name,), f"session name {name!r} must be usable as a folder name (e.g. D11)")
                continue
            session = self.session(name, session_table)
            if session is not None:
                sessions[name] = session
        return sessions

    def session(self, name: str, table: Any) -> Session | None:
        key_path = ("sessions", name)
        table = self.table(table, key_path, _SESSION_KEYS, f'[sessions.{name}] with tests = ["BIAS01"]')
        day_folder = self.string(table, key_path, "day_folder", example='day_folder = "12_Mar_19"')
        if day_folder is not None and not _is_day_folder(day_folder):
            self.problem(key_path + ("day_folder",), f"expected a day folder name DD_Mmm_YY (e.g. \"12_Mar_19\") "
                         f"inside the data folder; got {day_folder!r}")
        tests_value = table.get("tests", _MISSING)
        if tests_value is _MISSING or tests_value == []:
            self.problem(key_path if tests_value is _MISSING else key_path + ("tests",),
                         f'session {name} has no tests; e.g. tests = ["BIAS01", "BIAS02"] or '
                         f'[[sessions.{name}.tests]] entries')
            return None
        if not isinstance(tests_value, list):
            self.wrong_type(key_path + ("tests",), tests_value,
                            'an array of test names or test tables, e.g. tests = ["BIAS01", "BIAS02"]')
            return None
        tests: list[SessionTest] = []
        first_seen: dict[str, int] = {}
        for index, entry in enumerate(tests_value):
            test = self.session_test(key_path + ("tests", index), entry)
            if test is None:
                continue
            if test.name in first_seen:
                earlier = self.line(key_path + ("tests", first_seen[test.name]))
                at = f" (first at line {earlier})" if earlier else f" (first as tests[{first_seen[test.name]}])"
                self.problem(key_path + ("tests", index),
                             f"test {test.name} is listed twice in session {name}{at}; list each test once")
                continue
            first_seen[test.name] = index
            tests.append(test)
        return Session(name=name, day_folder=day_folder, tests=tuple(tests))

    def session_test(self, key_path: tuple, entry: Any) -> SessionTest | None:
        if isinstance(entry, str):
            name, obsids_value, subtasks_value = entry, _MISSING, _MISSING
        elif isinstance(entry, dict):
            table = self.table(entry, key_path, _TEST_KEYS, "")
            name = self.string(table, key_path, "name", required=True, example='name = "CHINJ01"')
            obsids_value = table.get("obsids", _MISSING)
            subtasks_value = table.get("subtasks", _MISSING)
        else:
            self.wrong_type(key_path, entry, 'a test name ("BIAS01") or a table ({ name = "BIAS01", obsids = '
                            '[17283, 17292] })')
            return None
        name_path = key_path if isinstance(entry, str) else key_path + ("name",)
        definition = self.resolve(name.strip(), name_path) if name else None
        # check the rest even when the name is wrong: every problem is reported in one pass
        obsids = None if obsids_value is _MISSING else self.obsids(obsids_value, key_path + ("obsids",))
        subtasks = {} if subtasks_value is _MISSING else self.subtasks(subtasks_value, key_path + ("subtasks",),
                                                                     definition)
        if definition is None:
            return None
        canonical = getattr(definition, "name", None) or name.strip()
        return SessionTest(name=canonical, obsids=obsids, subtasks=subtasks)

    def resolve(self, name: str, key_path: tuple) -> Any:
        from engine.campaign.catalogue import UnknownTestError, resolve_test  # the catalogue is big: load lazily

        try:
            return resolve_test(name)
        except UnknownTestError as exc:
            self.problem(key_path, _exception_text(exc))
            return None

    def obsids(self, value: Any, key_path: tuple) -> tuple[int, int] | None:
        return self.range(value, key_path, integer=True, minimum=1, label="OBSID range", ends=("first", "last"),
                          expected="two positive integers [first, last], e.g. obsids = [17283, 17292]")

    def subtasks(self, value: Any, key_path: tuple, definition: Any) -> dict[str, bool]:
        family = getattr(definition, "family", None)
        schema = (self.families or {}).get(family) if family else None
        known = schema.subtasks if schema is not None else None
        table = self.table(value, key_path, None, "subtasks = { check = true, basic = false }")
        flags = {}
        for name, flag in table.items():
            if known is not None and name not in known:
                test = getattr(definition, "name", "this test")
                self.problem(key_path + (name,), _unknown_key_message(name, known, what="sub-task", owner=test))
                continue
            if not isinstance(flag, bool):
                self.wrong_type(key_path + (name,), flag, f"true or false, e.g. {name} = true")
                continue
            flags[name] = flag
        return flags


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------
# The shared checker's helpers under the names this module's code uses.
_unknown_key_message = unknown_key_message
_describe = describe_value
_is_int = is_int
_is_number = is_number


def _exception_text(exc: Exception) -> str:
    # KeyError's str() wraps its message in quotes; show the catalogue's own words.
    if exc.args and isinstance(exc.args[0], str) and str(exc) == repr(exc.args[0]):
        return exc.args[0]
    return str(exc)


def _is_day_folder(name: str) -> bool:
    if "/" in name or "\\" in name:
        return False
    try:
        parse_day_folder(name)
    except ValueError:
        return False
    return True
