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

import tomli

from ..paths import configs_dir

if TYPE_CHECKING:
    from .hk import HKFile

TIERS = ("P", "S")
TIER_NAMES = {"P": "performance", "S": "safe"}
KINDS = ("A", "R", "I")
_SEVERITY = {"ok": 0, "warning": 1, "critical": 2}
_ABSOLUTE_ZERO_SENTINEL = -273.0  # ELVIS writes -273.15 / -273.27 for an absent sensor
_EPS = 1e-9  # float slack at the limit edges (26.2 - 26.0 is not exactly 0.2)


class HKLimitsError(ValueError):
    """A bad entry in an HK limits table; the message names the key and what was expected."""


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


def _real(source: str, where: str, field: str, entry: Mapping[str, Any]) -> float:
    value = entry.get(field)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HKLimitsError(f"{source}: {where}: expected a number for '{field}', found {value!r}")
    return float(value)


def _parse_limit(source: str, key: str, tier: str, entry: Any) -> Limit:
    where = f"[limits.{key}] {tier}"
    if not isinstance(entry, Mapping):
        raise HKLimitsError(f"{source}: {where}: expected a table like {{ kind = \"A\", lo = 0, hi = 1 }}, found {entry!r}")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise HKLimitsError(f"{source}: {where}: expected kind 'A', 'R' or 'I', found {kind!r}")
    allowed = {"kind", "value"} if kind == "I" else {"kind", "lo", "hi"}
    extra = sorted(set(entry) - allowed)
    if extra:
        raise HKLimitsError(f"{source}: {where}: unexpected field(s) {', '.join(extra)} for kind '{kind}'")
    if kind == "I":
        return Limit("I", value=_real(source, where, "value", entry))
    lo, hi = _real(source, where, "lo", entry), _real(source, where, "hi", entry)
    if lo > hi:
        raise HKLimitsError(f"{source}: {where}: expected lo <= hi, found lo = {lo:g}, hi = {hi:g}")
    return Limit(kind, lo=lo, hi=hi)


def _build(document: Mapping[str, Any], source: str) -> HKLimits:
    table = document.get("limits")
    if not isinstance(table, Mapping) or not table:
        raise HKLimitsError(f"{source}: expected a [limits] table with one entry per HK key")
    commanded = document.get("commanded", {})
    if not isinstance(commanded, Mapping) or not all(isinstance(v, str) for v in commanded.values()):
        raise HKLimitsError(f"{source}: [commanded]: expected HK key = \"EXP_LOG column\" pairs")
    limits: dict[str, dict[str, Limit]] = {}
    units: dict[str, str] = {}
    for key, entry in table.items():
        if not isinstance(entry, Mapping):
            raise HKLimitsError(f"{source}: [limits.{key}]: expected a table with P and S, found {entry!r}")
        missing = [tier for tier in TIERS if tier not in entry]
        if missing:
            raise HKLimitsError(f"{source}: [limits.{key}]: expected both tiers P and S, missing {', '.join(missing)}")
        unknown = sorted(set(entry) - {"P", "S", "unit"})
        if unknown:
            raise HKLimitsError(f"{source}: [limits.{key}]: unexpected field(s) {', '.join(unknown)}")
        unit = entry.get("unit", "")
        if not isinstance(unit, str):
            raise HKLimitsError(f"{source}: [limits.{key}]: expected unit as a string, found {unit!r}")
        limits[key] = {tier: _parse_limit(source, key, tier, entry[tier]) for tier in TIERS}
        units[key] = unit
        relative = [t for t in TIERS if limits[key][t].kind == "R"]
        if relative and key not in commanded:
            raise HKLimitsError(
                f"{source}: [limits.{key}]: relative (R) limit needs a commanded counterpart in [commanded]"
            )
    settings = document.get("settings", {})
    threshold = -240.0
    if "disconnected_temperature" in settings:
        threshold = _real(source, "[settings]", "disconnected_temperature", settings)
    return HKLimits(limits, commanded, units, threshold, source)


def load_hk_limits(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> HKLimits:
    """Load the HK limits table (default: configs/hk_limits.toml).

    `overrides` has the shape of the TOML document, e.g.
    `{"limits": {"CCD1_TEMP_T": {"P": {"lo": -125.0, "hi": -115.0}}}}`, and is laid over it.
    """
    path = Path(path) if path is not None else default_limits_path()
    with open(path, "rb") as handle:
        try:
            document = tomli.load(handle)
        except tomli.TOMLDecodeError as why:
            raise HKLimitsError(f"{path.name}: not valid TOML: {why}") from None
    if overrides:
        document = _merge(document, overrides)
    return _build(document, path.name)
