"""Monitor settings: an optional `monitor.toml` (template: configs/monitor_template.toml).

Kept apart from the campaign config for now; every problem is reported at once with file, line
and key, as for the campaign file. Precedence when the monitor starts: command-line flags, then
monitor.toml, then the campaign's [watch] table, then the defaults below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..formats.hklimits import HKLimits, HKLimitsError, load_hk_limits
from ..formats.tomlfile import MISSING, TomlChecker, load_toml, unknown_key_message
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
    scrub_hours: float = 12.0  # each backup copy is hashed again this long after its last check (0 = never)
    scrub_mb_per_s: float = 4.0  # pace of that re-hash: a few per cent of a disk's bandwidth
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
            "idle_stop_minutes", "chamber", "limits_file", "scrub_hours", "scrub_mb_per_s")
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
    checker.raise_if_any()
    return settings


class _Checker(TomlChecker):
    """monitor.toml's schema, read through the shared checker's getters."""

    def settings(self, data: dict) -> MonitorSettings:
        data = self.table(data, (), _TOP)
        defaults = MonitorSettings()
        path = ("monitor",)
        monitor = self.table(data.get("monitor", MISSING), path, _MONITOR)
        limits_file = self.path(monitor, path, "limits_file", example='limits_file = "hk_limits.toml"')
        if limits_file is not None and not limits_file.is_file():
            self.problem(path + ("limits_file",), f"file {limits_file} does not exist")
            limits_file = None
        poll = self.number(monitor, path, "poll_seconds", minimum=0, strict=True)
        settings = MonitorSettings(
            repeat_minutes=float(self.number(monitor, path, "repeat_minutes", defaults.repeat_minutes, minimum=0)),
            settle_seconds=float(self.number(monitor, path, "settle_seconds", defaults.settle_seconds, minimum=0)),
            series_length=self.integer(monitor, path, "series_length", defaults.series_length, minimum=1),
            polling=self.choice(monitor, path, "polling", POLLING_MODES, None),
            poll_seconds=None if poll is None else float(poll),
            idle_stop_minutes=float(self.number(monitor, path, "idle_stop_minutes", defaults.idle_stop_minutes,
                                                minimum=0)),
            chamber=self.string(monitor, path, "chamber"),
            limits_file=limits_file,
            scrub_hours=float(self.number(monitor, path, "scrub_hours", defaults.scrub_hours, minimum=0)),
            scrub_mb_per_s=float(self.number(monitor, path, "scrub_mb_per_s", defaults.scrub_mb_per_s, minimum=0,
                                             strict=True)),
            source=Path(os.path.abspath(self.doc.path)),
        )
        alerts = self.table(data.get("alerts", MISSING), ("alerts",), _ALERTS)
        settings = replace(
            settings,
            bell_level=self.choice(alerts, ("alerts",), "bell", ALERT_LEVELS, defaults.bell_level),
            email=self.email(alerts["email"]) if "email" in alerts else None,
            command=self.command(alerts["command"]) if "command" in alerts else None,
        )
        if "limits" in data:
            settings = replace(settings, limits_overrides=self.limits(data["limits"], settings.limits_file))
        return settings

    def email(self, value: Any) -> EmailSettings | None:
        path = ("alerts", "email")
        table = self.table(value, path, _EMAIL)
        host = self.string(table, path, "host", required=True)
        sender = self.string(table, path, "from", required=True)
        to = self.strings(table, path, "to", required=True, valid=lambda address: "@" in address,
                          expected='addresses, e.g. to = ["ops@example.org"]')
        port = self.integer(table, path, "port", 25, minimum=1)
        starttls = self.boolean(table, path, "starttls", False)
        level = self.choice(table, path, "level", ALERT_LEVELS[:2], "critical")
        timeout = float(self.number(table, path, "timeout_seconds", 10.0, minimum=0, strict=True))
        username = self.string(table, path, "username")
        password_env = self.string(table, path, "password_env")
        if host is None or sender is None or to is None:
            return None
        return EmailSettings(host=host, sender=sender, to=tuple(to), port=port, level=level, starttls=starttls,
                             username=username, password_env=password_env, timeout_seconds=timeout)

    def command(self, value: Any) -> CommandSettings | None:
        path = ("alerts", "command")
        table = self.table(value, path, _COMMAND)
        argv = self.strings(table, path, "argv", required=True,
                            expected='the program and its arguments, e.g. argv = ["/usr/local/bin/sms", "+441234"]')
        level = self.choice(table, path, "level", ALERT_LEVELS[:2], "critical")
        timeout = float(self.number(table, path, "timeout_seconds", 30.0, minimum=0, strict=True))
        return None if argv is None else CommandSettings(argv=tuple(argv), level=level, timeout_seconds=timeout)

    def limits(self, value: Any, limits_file: Path | None) -> dict[str, Any]:
        """The [limits] overrides, checked against the table they are laid over."""
        table = self.table(value, ("limits",))
        try:
            base = load_hk_limits(limits_file)
        except HKLimitsError as exc:  # the limits file's own problems, located in it
            self.problems.extend(exc.problems)
            return {}
        good: dict[str, Any] = {}
        for key, entry in table.items():
            if key not in base and not (isinstance(entry, dict) and {"P", "S"} <= set(entry)):
                # a new key must give both tiers; a typo of a known key is the likelier mistake
                self.problem(("limits", key), unknown_key_message(key, base.keys(), what="HK key")
                             + "; a new key needs both P and S")
                continue
            good[key] = entry
        overrides = {"limits": good}
        try:
            load_hk_limits(limits_file, overrides, overrides_doc=self.doc)
        except HKLimitsError as exc:
            self.problems.extend(exc.problems)
            return {}
        return overrides


def severity_at_least(severity: str, level: str) -> bool:
    """Does an event of `severity` reach an alert `level` ("off" is never reached)?"""
    if level == "off":
        return False
    return SEVERITIES.index(severity) >= SEVERITIES.index(level)
