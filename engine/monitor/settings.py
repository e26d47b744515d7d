"""Monitor settings: an optional `monitor.toml` (template: configs/monitor_template.toml).

Kept apart from the campaign config for now; every problem is reported at once with file, line
and key, as for the campaign file. Precedence when the monitor starts: command-line flags, then
monitor.toml, then the campaign's [watch] table, then the defaults below.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..formats.hklimits import HKLimits, HKLimitsError, load_hk_limits
from ..formats.tomlfile import ConfigError, ConfigProblem, TomlDocument, format_key_path, load_toml
from .events import SEVERITIES

POLLING_MODES = ("auto", "events", "polling")
ALERT_LEVELS = ("warning", "critical", "off")


@dataclass(frozen=True)
class EmailSettings:
    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 25
    level: str = "critical"
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None  # name of the environment variable holding the password
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class CommandSettings:
    argv: tuple[str, ...]
    level: str = "critical"
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class MonitorSettings:
    repeat_minutes: float = 60.0  # an alert for a key still out of limits is repeated this often
    settle_seconds: float = 3.0  # a file unchanged this long (and complete) counts as written
    series_length: int = 600  # HK samples kept per key for sparklines (~8 exposures)
    polling: str | None = None  # None: not set here (campaign [watch] or "auto")
    poll_seconds: float | None = None
    idle_stop_minutes: float = 0.0  # 0 = never stop for lack of news
    chamber: str | None = None  # chamber profile for expected frames per test
    bell_level: str = "warning"  # "off" silences the terminal bell / app notification
    email: EmailSettings | None = None
    command: CommandSettings | None = None
    limits_file: Path | None = None
    limits_overrides: dict[str, Any] = field(default_factory=dict)  # {"limits": {...}} laid over the table
    source: Path | None = None

    def load_limits(self) -> HKLimits:
        overrides = self.limits_overrides or None
        return load_hk_limits(self.limits_file, overrides)

    def with_changes(self, **changes: Any) -> MonitorSettings:
        return replace(self, **changes)


_TOP = ("monitor", "alerts", "limits")
_MONITOR = ("repeat_minutes", "settle_seconds", "series_length", "polling", "poll_seconds",
            "idle_stop_minutes", "chamber", "limits_file")
_ALERTS = ("bell", "email", "command")
_EMAIL = ("host", "port", "from", "to", "level", "starttls", "username", "password_env", "timeout_seconds")
_COMMAND = ("argv", "level", "timeout_seconds")


def settings_for(campaign: Any = None, path: str | Path | None = None) -> MonitorSettings:
    """The monitor's settings as the CLI and the app resolve them: `path`, else monitor.toml
    beside the campaign file if there is one; gaps filled from the campaign ([watch] polling,
    its chamber), then the defaults. Raises ConfigError."""
    if path is None and campaign is not None and getattr(campaign, "source", None) is not None:
        beside = Path(campaign.source).parent / "monitor.toml"
        path = beside if beside.is_file() else None
    settings = load_monitor_settings(path) if path is not None else MonitorSettings()
    watch = getattr(campaign, "watch", None)
    changes: dict[str, Any] = {}
    if settings.polling is None:
        changes["polling"] = watch.polling if watch is not None else "auto"
    if settings.poll_seconds is None:
        changes["poll_seconds"] = watch.poll_seconds if watch is not None else 5.0
    if settings.chamber is None and campaign is not None:
        changes["chamber"] = campaign.info.chamber
    return replace(settings, **changes)


def load_monitor_settings(path: str | Path) -> MonitorSettings:
    """Read and validate monitor.toml; raises ConfigError listing every problem."""
    doc = load_toml(path)
    checker = _Checker(doc)
    settings = checker.settings(doc.data)
    if checker.problems:
        raise ConfigError(sorted(checker.problems, key=lambda p: (p.line is None, p.line or 0)))
    return settings


class _Checker:
    def __init__(self, doc: TomlDocument):
        self.doc = doc
        self.base = Path(os.path.abspath(doc.path)).parent
        self.problems: list[ConfigProblem] = []

    def problem(self, key_path: tuple, message: str) -> None:
        self.problems.append(ConfigProblem(self.doc.path, self.doc.nearest_line(key_path),
                                           format_key_path(key_path), message))

    def table(self, data: dict, key_path: tuple, known: tuple[str, ...] | None) -> dict:
        value = data.get(key_path[-1], {}) if key_path else data
        if not isinstance(value, dict):
            self.problem(key_path, f"expected a table [{format_key_path(key_path)}]; got {type(value).__name__}")
            return {}
        if known is not None:
            for key in value:
                if key not in known:
                    self.problem(key_path + (key,), _unknown(key, known))
        return value

    def number(self, table: dict, key_path: tuple, key: str, default: float, *, minimum: float = 0.0,
               integer: bool = False, strict: bool = False) -> float:
        if key not in table:
            return default
        value = table[key]
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or value < minimum or (strict and value == minimum):
            kind = "a whole number" if integer else "a number"
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            self.problem(key_path + (key,), f"expected {kind} {bound}; got {value!r}")
            return default
        return value

    def choice(self, table: dict, key_path: tuple, key: str, choices: tuple[str, ...], default: Any) -> Any:
        if key not in table:
            return default
        value = table[key]
        if value not in choices:
            self.problem(key_path + (key,), f"expected one of {', '.join(repr(c) for c in choices)}; got {value!r}")
            return default
        return value

    def string(self, table: dict, key_path: tuple, key: str, *, required: bool = False) -> str | None:
        if key not in table:
            if required:
                self.problem(key_path + (key,), f"missing required key {key!r} in [{format_key_path(key_path)}]")
            return None
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            self.problem(key_path + (key,), f"expected a non-empty string; got {value!r}")
            return None
        return value

    def settings(self, data: dict) -> MonitorSettings:
        for key in data:
            if key not in _TOP:
                self.problem((key,), _unknown(key, _TOP))
        defaults = MonitorSettings()
        monitor = self.table(data, ("monitor",), _MONITOR)
        path = ("monitor",)
        polling = self.choice(monitor, path, "polling", POLLING_MODES, None)
        poll = self.number(monitor, path, "poll_seconds", None, strict=True) if "poll_seconds" in monitor else None
        limits_file = None
        text = self.string(monitor, path, "limits_file")
        if text is not None:
            limits_file = Path(os.path.expanduser(text))
            limits_file = limits_file if limits_file.is_absolute() else self.base / limits_file
            if not limits_file.is_file():
                self.problem(path + ("limits_file",), f"file {limits_file} does not exist")
                limits_file = None
        settings = MonitorSettings(
            repeat_minutes=float(self.number(monitor, path, "repeat_minutes", defaults.repeat_minutes)),
            settle_seconds=float(self.number(monitor, path, "settle_seconds", defaults.settle_seconds)),
            series_length=int(self.number(monitor, path, "series_length", defaults.series_length,
                                          minimum=1, integer=True)),
            polling=polling,
            poll_seconds=None if poll is None else float(poll),
            idle_stop_minutes=float(self.number(monitor, path, "idle_stop_minutes", defaults.idle_stop_minutes)),
            chamber=self.string(monitor, path, "chamber"),
            limits_file=limits_file,
            source=Path(os.path.abspath(self.doc.path)),
        )
        alerts = self.table(data, ("alerts",), _ALERTS)
        settings = replace(
            settings,
            bell_level=self.choice(alerts, ("alerts",), "bell", ALERT_LEVELS, defaults.bell_level),
            email=self.email(alerts) if "email" in alerts else None,
            command=self.command(alerts) if "command" in alerts else None,
        )
        if "limits" in data:
            settings = replace(settings, limits_overrides=self.limits(data, settings.limits_file))
        return settings

    def email(self, alerts: dict) -> EmailSettings | None:
        path = ("alerts", "email")
        table = self.table(alerts, path, _EMAIL)
        host = self.string(table, path, "host", required=True)
        sender = self.string(table, path, "from", required=True)
        to = table.get("to")
        if isinstance(to, str):
            to = [to]
        if not (isinstance(to, list) and to and all(isinstance(t, str) and "@" in t for t in to)):
            self.problem(path + ("to",), f"expected addresses, e.g. to = [\"ops@example.org\"]; got {to!r}")
            to = None
        port = int(self.number(table, path, "port", 25, minimum=1, integer=True))
        starttls = table.get("starttls", False)
        if not isinstance(starttls, bool):
            self.problem(path + ("starttls",), f"expected true or false; got {starttls!r}")
            starttls = False
        level = self.choice(table, path, "level", ALERT_LEVELS[:2], "critical")
        timeout = float(self.number(table, path, "timeout_seconds", 10.0, strict=True))
        if host is None or sender is None or to is None:
            return None
        return EmailSettings(host=host, sender=sender, to=tuple(to), port=port, level=level, starttls=starttls,
                             username=self.string(table, path, "username"),
                             password_env=self.string(table, path, "password_env"), timeout_seconds=timeout)

    def command(self, alerts: dict) -> CommandSettings | None:
        path = ("alerts", "command")
        table = self.table(alerts, path, _COMMAND)
        argv = table.get("argv")
        if isinstance(argv, str):
            argv = [argv]
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) and a for a in argv)):
            self.problem(path + ("argv",), f"expected the program and its arguments, e.g. "
                         f"argv = [\"/usr/local/bin/sms\", \"+441234\"]; got {argv!r}")
            return None
        level = self.choice(table, path, "level", ALERT_LEVELS[:2], "critical")
        timeout = float(self.number(table, path, "timeout_seconds", 30.0, strict=True))
        return CommandSettings(argv=tuple(argv), level=level, timeout_seconds=timeout)

    def limits(self, data: dict, limits_file: Path | None) -> dict[str, Any]:
        """The [limits] overrides, checked against the table they are laid over."""
        table = self.table(data, ("limits",), None)
        try:
            base = load_hk_limits(limits_file)
        except (HKLimitsError, OSError) as exc:
            self.problem(("monitor", "limits_file"), str(exc))
            return {}
        good: dict[str, Any] = {}
        for key, entry in table.items():
            if key not in base and not (isinstance(entry, dict) and {"P", "S"} <= set(entry)):
                # a new key must give both tiers; a typo of a known key is the likelier mistake
                self.problem(("limits", key), _unknown(key, tuple(base.keys()), what="HK key")
                             + "; a new key needs both P and S")
                continue
            good[key] = entry
        overrides = {"limits": good}
        try:
            load_hk_limits(limits_file, overrides)
        except HKLimitsError as exc:
            # "hk_limits.toml: [limits.KEY] P: what" -> key path limits.KEY.P, message "what"
            found = re.search(r"\[limits\.([^\]]+)\](?: (P|S))?: (.*)$", str(exc))
            if found:
                key, tier, message = found.groups()
                self.problem(("limits", key) + ((tier,) if tier else ()), message)
            else:
                self.problem(("limits",), str(exc).split(": ", 1)[-1])
            return {}
        return overrides


def _unknown(key: str, known: tuple[str, ...], what: str = "key") -> str:
    text = f"unknown {what} {key!r}"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        text += f"; did you mean {close[0]!r}?"
    elif len(known) <= 12:
        text += f" (expected one of: {', '.join(known)})"
    return text


def severity_at_least(severity: str, level: str) -> bool:
    """Does an event of `severity` reach an alert `level` ("off" is never reached)?"""
    if level == "off":
        return False
    return SEVERITIES.index(severity) >= SEVERITIES.index(level)
