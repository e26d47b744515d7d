"""The campaign config: which block, chamber, hardware, data folders and sessions a run works on.

It replaces vison's Python config script (`vison_config_*.py`: BLOCKID, CHAMBER, diffvalues,
inCDPs, resroot, test_specifics with todo_flags). It is a TOML file, never executed, validated in
one pass: every problem is reported at once, with file, line, key and what was expected.
See configs/campaign_template.toml for the commented form users copy.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from engine.formats.names import parse_day_folder
from engine.formats.tomlfile import ConfigError, ConfigProblem, TomlDocument, format_key_path, load_toml
from engine.paths import configs_dir

__all__ = [
    "CCD_NAMES", "LIMITS", "POLLING_MODES", "CalProducts", "Campaign", "CampaignInfo", "ConfigError",
    "ConfigProblem", "Hardware", "LimitSpec", "Paths", "Session", "SessionTest", "WatchSettings",
    "campaign_from_dict", "load_campaign", "quick_campaign",
]

CCD_NAMES = ("CCD1", "CCD2", "CCD3")
POLLING_MODES = ("auto", "events", "polling")
DEFAULT_ELVIS = "7.5.X"  # the ELVIS version of the FM campaign (cookbook: "-v 7.5.X")


@dataclass(frozen=True)
class LimitSpec:
    """A performance limit users may override in [limits]: a number or a [low, high] range."""

    kind: str  # "number" | "range"
    default: float | tuple[float, float]
    meaning: str


# vison's defaults (image/performance.py, task check windows); tasks read them via Campaign.limit().
LIMITS: dict[str, LimitSpec] = {
    "offset_nominal_adu": LimitSpec("number", 2800.0, "nominal offset when the block has no offsets table"),
    "offset_margin_adu": LimitSpec("number", 50.0, "allowed offset deviation from nominal"),
    "offset_gradient_adu": LimitSpec("range", (-10.0, 10.0), "image/overscan minus prescan offset"),
    "ron_adu": LimitSpec("range", (0.86, 1.44), "read noise (std of prescan/overscan)"),
    "gain_e_per_adu": LimitSpec("range", (3.1, 3.5), "PTC gain"),
    "flat_fluence_tolerance": LimitSpec("number", 0.10, "relative tolerance of flat fluence vs expected"),
    "injection_tolerance": LimitSpec("number", 0.5, "relative tolerance of charge-injection level"),
    "point_background_adu": LimitSpec("range", (-1.0, 5.0), "background around point sources"),
    "fwhm_px": LimitSpec("range", (1.2, 3.0), "point-source FWHM"),
    "saturation_fraction": LimitSpec("number", 0.10, "largest fraction of saturated pixels in a frame"),
}


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
    limits: dict[str, float | tuple[float, float]] = field(default_factory=dict)  # overrides only
    watch: WatchSettings = field(default_factory=WatchSettings)
    source: Path | None = None  # the config file (None for the command line's quick form)
    offsets: dict[str, dict[str, float]] = field(default_factory=dict)  # block's nominal, CCDn -> Q -> ADU

    def session(self, name: str) -> Session:
        try:
            return self.sessions[name]
        except KeyError:
            known = ", ".join(self.sessions) or "none"
            raise KeyError(f"no session {name!r} in the campaign (sessions: {known})") from None

    def limit(self, name: str) -> float | tuple[float, float]:
        """The campaign's value of a performance limit: its override or vison's default."""
        if name not in LIMITS:
            raise KeyError(f"unknown limit {name!r}; known: {', '.join(LIMITS)}")
        return self.limits.get(name, LIMITS[name].default)

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
def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign TOML file; raises ConfigError listing every problem found."""
    doc = load_toml(path)
    base_dir = Path(os.path.abspath(doc.path)).parent
    return campaign_from_dict(doc.data, base_dir=base_dir, doc=doc, source=Path(os.path.abspath(doc.path)))


def campaign_from_dict(data: dict, *, base_dir: Path, doc: TomlDocument | None = None,
                       source: Path | None = None, origin: str = "<command line>") -> Campaign:
    """Validate config data (as parsed from TOML) into a Campaign.

    `base_dir` anchors relative paths; `doc` gives line numbers for problems; `origin` names the
    data in messages when there is no file.
    """
    checker = _Checker(doc, origin, Path(base_dir))
    campaign = checker.campaign(data, source)
    if checker.problems:
        # file order reads best; problems without a line (no file) keep their walk order at the end
        raise ConfigError(sorted(checker.problems, key=lambda p: (p.line is None, p.line or 0)))
    assert campaign is not None
    return campaign


def quick_campaign(data: Path, tests: list[str], obsids: tuple[int, int] | None, results: Path, *,
                   session: str = "QUICK", day_folder: str | None = None, block: str = "UNKNOWN",
                   chamber: str | None = None, elvis: str = DEFAULT_ELVIS,
                   subtasks: dict[str, bool] | None = None) -> Campaign:
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
    return campaign_from_dict(config, base_dir=Path.cwd())


# ---------------------------------------------------------------------------------------------------
# Validation: walks the data, collects problems, builds the dataclasses
# ---------------------------------------------------------------------------------------------------
_TOP_KEYS = ("campaign", "hardware", "paths", "calproducts", "offsets", "limits", "watch", "sessions")
_CAMPAIGN_KEYS = ("block", "chamber", "operator", "elvis")
_HARDWARE_KEYS = ("roe", "rpsu", "ccd1", "ccd2", "ccd3")
_PATHS_KEYS = ("data", "results", "calproducts")
_CALPRODUCTS_KEYS = ("masks", "master_bias", "flats", "gains")
_QUADRANT_KEYS = ("E", "F", "G", "H")
_WATCH_KEYS = ("idle_stop_minutes", "polling", "poll_seconds")
_SESSION_KEYS = ("day_folder", "tests")
_TEST_KEYS = ("name", "obsids", "subtasks")
_MISSING = object()


class _Checker:
    def __init__(self, doc: TomlDocument | None, origin: str, base_dir: Path):
        self.doc = doc
        self.origin = doc.path if doc is not None else origin
        self.base_dir = base_dir
        self.problems: list[ConfigProblem] = []

    # -- reporting ------------------------------------------------------------------------------
    def problem(self, key_path: tuple, message: str) -> None:
        line = self.doc.nearest_line(key_path) if self.doc is not None else None
        self.problems.append(ConfigProblem(self.origin, line, format_key_path(key_path), message))

    def line(self, key_path: tuple) -> int | None:
        return self.doc.line_of(key_path) if self.doc is not None else None

    # -- generic shape checks -------------------------------------------------------------------
    def table(self, table: Any, key_path: tuple, known: tuple[str, ...] | None, example: str) -> dict:
        """`table` as a dict (empty if of the wrong type), reporting unknown keys."""
        if not isinstance(table, dict):
            self.wrong_type(key_path, table, f"a table, e.g. {example}")
            return {}
        if known is not None:
            for key in table:
                if key not in known:
                    self.problem(key_path + (key,), _unknown_key_message(key, known))
        return table

    def wrong_type(self, key_path: tuple, value: Any, expected: str) -> None:
        self.problem(key_path, f"expected {expected}; got {_describe(value)}")

    def required(self, table: dict, key_path: tuple, key: str, example: str) -> Any:
        if key not in table:
            where = f"in [{format_key_path(key_path)}]" if key_path else "at the top of the file"
            self.problem(key_path + (key,), f"missing required key {key!r} {where}; e.g. {example}")
            return _MISSING
        return table[key]

    def string(self, table: dict, key_path: tuple, key: str, *, required: bool = False,
               example: str = "") -> str | None:
        value = self.required(table, key_path, key, example) if required else table.get(key, _MISSING)
        if value is _MISSING:
            return None
        if not isinstance(value, str) or not value.strip():
            self.wrong_type(key_path + (key,), value, f"a non-empty string, e.g. {example}")
            return None
        return value.strip()

    # -- sections -------------------------------------------------------------------------------
    def campaign(self, data: Any, source: Path | None) -> Campaign | None:
        data = self.table(data, (), _TOP_KEYS, '[campaign]')
        info = self.info(self.required(data, (), "campaign", '[campaign] with block = "NOSTROMO"'))
        hardware = self.hardware(data.get("hardware", {}))
        paths = self.paths(self.required(data, (), "paths", '[paths] with data = "data", results = "results"'))
        calproducts = self.calproducts(data.get("calproducts", {}), paths)
        limits = self.limits(data.get("limits", {}))
        offsets = self.per_quadrant_numbers(data.get("offsets", {}), ("offsets",), "offsets",
                                            "{ E = 2713, F = 2671, G = 2831, H = 2571 }", low=0.0, high=65535.0)
        watch = self.watch(data.get("watch", {}))
        sessions = self.sessions(self.required(data, (), "sessions", '[sessions.D11] with tests = ["BIAS01"]'))
        if self.problems or info is None or paths is None:
            return None
        return Campaign(info=info, hardware=hardware, paths=paths, sessions=sessions,
                        calproducts=calproducts, limits=limits, watch=watch, source=source, offsets=offsets)

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
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
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
        if calproducts is not None and not calproducts.is_dir():
            self.problem(key_path + ("calproducts",), f"calproducts folder {calproducts} does not exist")
        if data is None or results is None:
            return None
        return Paths(config_dir=self.base_dir, data=data, results=results, calproducts=calproducts)

    def path(self, table: dict, key_path: tuple, key: str, *, base: Path | None = None,
             required: bool = False, example: str) -> Path | None:
        text = self.string(table, key_path, key, required=required, example=example)
        if text is None:
            return None
        path = Path(os.path.expanduser(text))
        # abspath, not resolve: keep the user's symlinks (results is often a link to a data disk)
        return Path(os.path.abspath(path if path.is_absolute() else (base or self.base_dir) / path))

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
            for quadrant, value in per_quadrant.items():
                if quadrant not in _QUADRANT_KEYS:
                    continue
                if not _is_number(value) or not low <= float(value) <= high:
                    self.problem(key_path + (ccd, quadrant),
                                 f"expected a number between {low:g} and {high:g} ({what}), got {value!r}")
                    continue
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

    def limits(self, table: Any) -> dict[str, float | tuple[float, float]]:
        key_path = ("limits",)
        table = self.table(table, key_path, tuple(LIMITS), '[limits] with ron_adu = [0.86, 1.44]')
        limits: dict[str, float | tuple[float, float]] = {}
        for name, value in table.items():
            spec = LIMITS.get(name)
            if spec is None:
                continue  # already reported as unknown
            if spec.kind == "number":
                if _is_number(value):
                    limits[name] = float(value)
                else:
                    self.wrong_type(key_path + (name,), value, f"a number, e.g. {name} = {spec.default}")
            elif (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)):
                if value[0] > value[1]:
                    self.problem(key_path + (name,), f"range reversed ({value[0]} > {value[1]}); "
                                 "expected [low, high] with low <= high")
                else:
                    limits[name] = (float(value[0]), float(value[1]))
            else:
                low, high = spec.default
                self.wrong_type(key_path + (name,), value, f"a range [low, high], e.g. {name} = [{low}, {high}]")
        return limits

    def watch(self, table: Any) -> WatchSettings:
        key_path = ("watch",)
        table = self.table(table, key_path, _WATCH_KEYS, '[watch]')
        defaults = WatchSettings()
        idle = table.get("idle_stop_minutes", defaults.idle_stop_minutes)
        if isinstance(idle, bool) or not isinstance(idle, int) or idle < 0:
            self.wrong_type(key_path + ("idle_stop_minutes",), idle,
                            "a whole number of minutes >= 0 (0 = wait forever), e.g. idle_stop_minutes = 240")
            idle = defaults.idle_stop_minutes
        polling = table.get("polling", defaults.polling)
        if polling not in POLLING_MODES:
            self.wrong_type(key_path + ("polling",), polling,
                            'one of "auto", "events", "polling" (use "polling" on NFS/SMB mounts)')
            polling = defaults.polling
        poll_seconds = table.get("poll_seconds", defaults.poll_seconds)
        if not _is_number(poll_seconds) or poll_seconds <= 0:
            self.wrong_type(key_path + ("poll_seconds",), poll_seconds,
                            "a number of seconds > 0, e.g. poll_seconds = 5")
            poll_seconds = defaults.poll_seconds
        return WatchSettings(idle_stop_minutes=idle, polling=polling, poll_seconds=float(poll_seconds))

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
        example = "obsids = [17283, 17292]"
        if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v > 0 for v in value)):
            self.wrong_type(key_path, value, f"two positive integers [first, last], e.g. {example}")
            return None
        first, last = value
        if first > last:
            self.problem(key_path,
                         f"OBSID range reversed ({first} > {last}); expected [first, last] with first <= last")
            return None
        return (first, last)

    def subtasks(self, value: Any, key_path: tuple, definition: Any) -> dict[str, bool]:
        known = tuple(getattr(definition, "subtasks", ())) if definition is not None else None
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
def _unknown_key_message(key: str, known: tuple[str, ...], what: str = "key", owner: str = "") -> str:
    message = f"unknown {what} {key!r}" + (f" of {owner}" if owner else "")
    by_case = [k for k in known if k.lower() == key.lower()]
    close = by_case or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close and len(key) >= 3:  # short names miss the ratio: "rons" -> ron_adu, "offset" -> offset_margin_adu
        lowered = key.lower()
        sharing = [k for k in known if k.lower().startswith(lowered) or lowered.startswith(k.lower().split("_")[0])]
        close = difflib.get_close_matches(key, sharing, n=1, cutoff=0.0)
    if close:
        message += f"; did you mean {close[0]!r}?"
    if len(known) <= 12:
        message += f" (expected one of: {', '.join(known)})"
    return message


def _describe(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    kinds = [(bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
             (list, "an array"), (dict, "a table"), (datetime, "a date-time"), (date, "a date"), (time, "a time")]
    kind = next((label for cls, label in kinds if isinstance(value, cls)), type(value).__name__)
    shown = repr(value) if not isinstance(value, (bool, dict)) else ""
    if isinstance(value, bool):
        shown = "true" if value else "false"
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{kind} ({shown})" if shown else kind


def _exception_text(exc: Exception) -> str:
    # KeyError's str() wraps its message in quotes; show the catalogue's own words.
    if exc.args and isinstance(exc.args[0], str) and str(exc) == repr(exc.args[0]):
        return exc.args[0]
    return str(exc)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_day_folder(name: str) -> bool:
    if "/" in name or "\\" in name:
        return False
    try:
        parse_day_folder(name)
    except ValueError:
        return False
    return True
