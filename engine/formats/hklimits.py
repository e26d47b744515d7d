"""HK limits: is a housekeeping reading good (P tier), merely safe (S tier), or neither?

The table is data, `configs/hk_limits.toml` (commented there); a campaign may override it.
Outside the performance (P) limits a reading is a "warning"; outside the safe (S) limits it is
"critical". Limits are absolute `[lo, hi]` (A), relative to the commanded value of the same
exposure from the EXP_LOG (R), or an identity (I: a flag must read exactly its value).
A sensor reading like -246 C or -273.15 is a disconnected sensor: always out of limits.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..paths import configs_dir
from .tomlfile import MISSING, ConfigError, TomlChecker, TomlDocument, load_toml

if TYPE_CHECKING:
    from .hk import HKFile

TIERS = ("P", "S")
TIER_NAMES = {"P": "performance", "S": "safe"}
KINDS = ("A", "R", "I")
_SEVERITY = {"ok": 0, "warning": 1, "critical": 2}
_ABSOLUTE_ZERO_SENTINEL = -273.0  # ELVIS writes -273.15 / -273.27 for an absent sensor
_EPS = 1e-9  # float slack at the limit edges (26.2 - 26.0 is not exactly 0.2)


class HKLimitsError(ConfigError):
    """Bad entries in an HK limits table: each problem names file, line, key and what was expected."""


@dataclass(frozen=True)
class Limit:
    kind: str  # "A", "R" or "I"
    lo: float | None = None  # A: bound; R: offset from the commanded value
    hi: float | None = None
    value: float | None = None  # I: the one allowed reading


@dataclass(frozen=True)
class LimitVerdict:
    key: str
    value: float
    status: str  # "ok", "warning" or "critical"
    tier: str | None  # the tier whose limit decided ("P" or "S"); None when no limit applied
    kind: str | None  # "A", "R" or "I" of that limit
    limit: tuple[float, float] | None  # the (lo, hi) actually applied, commanded value included
    reason: str  # a sentence for the operator
    stat: str = "value"  # which statistic was checked: value, mean, min or max

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _number(x: float) -> str:
    return f"{x:g}"


class HKLimits:
    """The limits of every HK key, both tiers, plus the commanded counterparts."""

    def __init__(
        self,
        limits: Mapping[str, Mapping[str, Limit]],
        commanded: Mapping[str, str],
        units: Mapping[str, str],
        disconnected_temperature: float = -240.0,
        source: str = "hk_limits",
    ):
        self.limits = dict(limits)
        self.commanded = dict(commanded)
        self.units = dict(units)
        self.disconnected_temperature = disconnected_temperature
        self.source = source

    def keys(self) -> list[str]:
        return list(self.limits)

    def __contains__(self, key: str) -> bool:
        return key in self.limits

    def limit(self, key: str, tier: str) -> Limit:
        return self.limits[key][tier]

    # ----------------------------------------------------------------------------------------

    def is_disconnected(self, key: str, value: float) -> bool:
        """A sentinel reading: no sensor behind it."""
        if value <= _ABSOLUTE_ZERO_SENTINEL:
            return True
        return self.units.get(key) == "C" and value <= self.disconnected_temperature

    def _commanded_value(self, key: str, commanded: Mapping[str, Any] | None) -> float | None:
        name = self.commanded.get(key)
        if name is None or not commanded:
            return None
        value = commanded.get(name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return None
        value = float(value)
        return None if math.isnan(value) else value

    def _applied(self, key: str, limit: Limit, commanded_value: float | None) -> tuple[float, float] | None:
        """The (lo, hi) a reading must fall in; None when it cannot be known."""
        if limit.kind == "A":
            return (limit.lo, limit.hi)
        if limit.kind == "I":
            return (limit.value, limit.value)
        if commanded_value is None:
            return None
        return (commanded_value + limit.lo, commanded_value + limit.hi)

    @staticmethod
    def _within(value: float, limit: Limit, applied: tuple[float, float], commanded_value: float | None) -> bool:
        if limit.kind == "R":
            offset = value - commanded_value
            return limit.lo - _EPS <= offset <= limit.hi + _EPS
        return applied[0] - _EPS <= value <= applied[1] + _EPS

    def _describe(self, key: str, tier: str, limit: Limit, applied: tuple[float, float],
                  commanded_value: float | None) -> str:
        unit = self.units.get(key, "")
        if limit.kind == "I":
            return f"the {TIER_NAMES[tier]} value {_number(limit.value)}"
        text = f"{TIER_NAMES[tier]} limits [{_number(applied[0])}, {_number(applied[1])}]"
        if limit.kind == "R":
            text += (
                f" (commanded {self.commanded[key]} = {_number(commanded_value)}"
                f"{' ' + unit if unit else ''}, allowed {limit.lo:+g}..{limit.hi:+g})"
            )
        return text

    def check(
        self,
        key: str,
        value: float,
        commanded: Mapping[str, Any] | None = None,
        *,
        stat: str = "value",
    ) -> LimitVerdict:
        """Judge one reading. `commanded` maps EXP_LOG column names to values (an EXP_LOG row
        will do); it is needed by the relative limits only."""
        value = float(value)
        unit = self.units.get(key, "")
        shown = f"{key} = {_number(value)}{' ' + unit if unit else ''}"
        if stat != "value":
            shown = f"{key} {stat} = {_number(value)}{' ' + unit if unit else ''}"
        tiers = self.limits.get(key)
        if tiers is None:
            return LimitVerdict(key, value, "ok", None, None, None, f"{shown}: no limits defined", stat)
        if math.isnan(value):
            return LimitVerdict(key, value, "warning", None, None, None, f"{key}: no valid reading", stat)

        disconnected = self.is_disconnected(key, value)
        note = " (sensor disconnected?)" if disconnected else ""
        commanded_value = self._commanded_value(key, commanded)
        unchecked: list[str] = []
        passed: tuple[str, tuple[float, float]] | None = None
        # Safe tier first: an emergency outranks a performance warning.
        for tier in ("S", "P"):
            limit = tiers[tier]
            applied = self._applied(key, limit, commanded_value)
            if applied is None:
                unchecked.append(tier)
                continue
            if not self._within(value, limit, applied, commanded_value):
                status = "critical" if tier == "S" or disconnected else "warning"
                where = self._describe(key, tier, limit, applied, commanded_value)
                verb = "differs from" if limit.kind == "I" else "outside"
                return LimitVerdict(key, value, status, tier, limit.kind, applied,
                                    f"{shown}: {verb} {where}{note}", stat)
            if tier == "P" or passed is None:
                passed = (tier, applied)

        if disconnected:
            # A campaign's limits may be wide, but a missing sensor cannot be called in limits.
            tier, applied = passed if passed else ("S", None)
            return LimitVerdict(key, value, "critical", tier, tiers[tier].kind, applied,
                                f"{shown}: out of limits{note}", stat)
        missing = ""
        if unchecked:
            names = " and ".join(TIER_NAMES[t] for t in unchecked)
            missing = (f"{names} limit relative to {self.commanded.get(key, '?')} not checkable"
                       " (commanded value unknown)")
        if passed is None:
            return LimitVerdict(key, value, "ok", None, "R", None, f"{shown}: {missing}", stat)
        tier, applied = passed
        where = self._describe(key, tier, tiers[tier], applied, commanded_value)
        verb = "equals" if tiers[tier].kind == "I" else "within"
        reason = f"{shown}: {verb} {where}" + (f"; {missing}" if missing else "")
        return LimitVerdict(key, value, "ok", tier, tiers[tier].kind, applied, reason, stat)

    def check_file(self, hkfile: HKFile, commanded: Mapping[str, Any] | None = None) -> list[LimitVerdict]:
        """One verdict per limited key of the file: the worst of its mean, min and max.

        The mean is the exposure's value, but an excursion within the file must not be
        averaged away, so the extremes are judged too.
        """
        verdicts = []
        for key in hkfile.keys:
            if key not in self.limits:
                continue
            mean, _std, low, high = hkfile.stats(key)
            # Extremes first: at equal severity the verdict names the reading that went out.
            worst = None
            for stat, value in (("min", low), ("max", high), ("mean", mean)):
                if math.isnan(value) and stat != "mean":
                    continue
                verdict = self.check(key, value, commanded, stat=stat)
                # a tie keeps the extreme, except that an all-ok key reports its mean
                if worst is None or _SEVERITY[verdict.status] > _SEVERITY[worst.status] or (
                        stat == "mean" and worst.status == "ok"):
                    worst = verdict
            verdicts.append(worst)
        return verdicts

    def nominal(self, key: str, commanded: Mapping[str, Any] | None = None) -> float | None:
        """The middle of the performance limits (what a mock HK reading should be)."""
        limit = self.limits[key]["P"]
        applied = self._applied(key, limit, self._commanded_value(key, commanded))
        return None if applied is None else (applied[0] + applied[1]) / 2


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def default_limits_path() -> Path:
    return configs_dir() / "hk_limits.toml"


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Override nested tables; a tier table that names its `kind` replaces the whole tier."""
    merged = copy.deepcopy(base)
    for name, value in override.items():
        current = merged.get(name)
        replaces_tier = isinstance(value, Mapping) and "kind" in value
        if isinstance(value, Mapping) and isinstance(current, dict) and not replaces_tier:
            merged[name] = _merge(current, value)
        else:
            merged[name] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
    return merged


_TOP_KEYS = ("settings", "commanded", "limits")
_SETTINGS_KEYS = ("disconnected_temperature",)
_ENTRY_KEYS = ("P", "S", "unit")
_LIMIT_FIELDS = {"A": ("kind", "lo", "hi"), "R": ("kind", "lo", "hi"), "I": ("kind", "value")}
_LIMIT_EXAMPLE = '{ kind = "A", lo = 0, hi = 1 }'


def _parse_limit(check: TomlChecker, key_path: tuple, entry: Any) -> Limit | None:
    entry = check.table(entry, key_path, None, _LIMIT_EXAMPLE)
    kind = check.choice(entry, key_path, "kind", KINDS, required=True, example='kind = "A"')
    if kind is None:
        return None
    check.unknown_keys(entry, key_path, _LIMIT_FIELDS[kind], what="field", owner=f'a kind "{kind}" limit')
    if kind == "I":
        value = check.number(entry, key_path, "value", required=True, example="value = 0")
        return None if value is None else Limit("I", value=float(value))
    lo = check.number(entry, key_path, "lo", required=True, example="lo = 0")
    hi = check.number(entry, key_path, "hi", required=True, example="hi = 1")
    if lo is None or hi is None:
        return None
    if lo > hi:
        check.problem(key_path, f"expected lo <= hi, found lo = {lo:g}, hi = {hi:g}")
        return None
    return Limit(kind, lo=float(lo), hi=float(hi))


def _build(check: TomlChecker, document: Mapping[str, Any], source: str) -> HKLimits | None:
    document = check.table(document, (), _TOP_KEYS)
    value = check.required(document, (), "limits", "[limits.CCD1_TEMP_T] with P and S tiers")
    table = check.table(value, ("limits",), None, "[limits.CCD1_TEMP_T] with P and S tiers")
    if value is not MISSING and not table:
        check.problem(("limits",), "expected a [limits] table with one entry per HK key")
    commanded_table = check.table(document.get("commanded", MISSING), ("commanded",), None,
                                  '[commanded] with CCD1_OD_T = "OD_1_T"')
    commanded = {key: column for key in commanded_table
                 if (column := check.string(commanded_table, ("commanded",), key,
                                            example=f'{key} = "OD_1_T"')) is not None}
    limits: dict[str, dict[str, Limit]] = {}
    units: dict[str, str] = {}
    for key, entry in table.items():
        key_path = ("limits", key)
        entry = check.table(entry, key_path, _ENTRY_KEYS, f"[limits.{key}] with P = {_LIMIT_EXAMPLE} and S")
        missing = [tier for tier in TIERS if tier not in entry]
        if missing:
            check.problem(key_path, f"expected both tiers P and S, missing {', '.join(missing)}")
        tiers = {tier: _parse_limit(check, key_path + (tier,), entry[tier]) for tier in TIERS if tier in entry}
        unit = check.string(entry, key_path, "unit", example='unit = "V"', empty=True)
        if missing or None in tiers.values():
            continue
        limits[key] = tiers  # type: ignore[assignment]
        units[key] = unit or ""
        if any(limit.kind == "R" for limit in tiers.values()) and key not in commanded:
            check.problem(key_path, "relative (R) limit needs a commanded counterpart in [commanded]")
    settings = check.table(document.get("settings", MISSING), ("settings",), _SETTINGS_KEYS)
    threshold = check.number(settings, ("settings",), "disconnected_temperature", -240.0)
    if check.problems:
        return None
    return HKLimits(limits, commanded, units, float(threshold), source)


def load_hk_limits(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    overrides_doc: TomlDocument | None = None,
) -> HKLimits:
    """Load the HK limits table (default: configs/hk_limits.toml); raises HKLimitsError.

    `overrides` has the shape of the TOML document, e.g.
    `{"limits": {"CCD1_TEMP_T": {"P": {"lo": -125.0, "hi": -115.0}}}}`, and is laid over it;
    `overrides_doc` is the file they were read from, where their problems are then located.
    """
    path = Path(path) if path is not None else default_limits_path()
    try:
        doc = load_toml(path)
    except ConfigError as exc:
        raise HKLimitsError(exc.problems) from None
    document = _merge(doc.data, overrides) if overrides else doc.data
    check = TomlChecker(doc, overlay=overrides_doc)
    limits = _build(check, document, path.name)
    check.raise_if_any(HKLimitsError)
    assert limits is not None
    return limits
