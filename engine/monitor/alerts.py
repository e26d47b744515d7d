"""Where monitor events go: the monitor log, the terminal/app, email, a site's own command.

Each sink has a `level`: it receives the events of that severity or worse ("info" = all).
Fast sinks (log file, callbacks) are called at once; slow ones (SMTP, commands) run on one
worker thread so a hung mail server never delays the HK checks. A sink that fails produces an
AlertDeliveryFailed event (logged, shown) instead of stopping the monitor: once, on the other
sinks, until it works again (then a notice says so).
"""

from __future__ import annotations

import os
import queue
import smtplib
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Callable, Iterable, Protocol, TextIO

from .events import AlertDeliveryFailed, MonitorEvent, MonitorNotice
from .settings import CommandSettings, EmailSettings, severity_at_least


class AlertSink(Protocol):
    name: str
    level: str  # "info", "warning", "critical" or "off"
    slow: bool  # delivered from the worker thread

    def deliver(self, events: list[MonitorEvent]) -> None:
        """Deliver events (all at or above `level`); raise on failure."""


def format_line(event: MonitorEvent) -> str:
    return f"{event.at.isoformat(sep=' ')}  {event.severity.upper():8s}  {event.message()}"


class LogSink:
    """The monitor log (eyegore's -g): one line per event, appended, flushed at once."""

    slow = False

    def __init__(self, path: str | os.PathLike[str], level: str = "info"):
        self.path = Path(path)
        self.name = f"log {self.path}"
        self.level = level
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def deliver(self, events: list[MonitorEvent]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            for event in events:
                handle.write(format_line(event) + "\n")


class StreamSink:
    """The console: a human line per event (routine details only if asked), or one JSON object a line."""

    slow = False

    def __init__(self, stream: TextIO | None = None, *, json_lines: bool = False, details: bool = False,
                 level: str = "info"):
        self.stream = stream or sys.stdout
        self.json_lines = json_lines
        self.details = details
        self.level = level
        self.name = "console"

    def deliver(self, events: list[MonitorEvent]) -> None:
        for event in events:
            if self.json_lines:
                self.stream.write(event.to_json() + "\n")
            elif self.details or not event.detail:
                self.stream.write(format_line(event) + "\n")
        self.stream.flush()


class CallbackSink:
    """Hands events to a function: the app's notification (bell, toast), or a test."""

    slow = False

    def __init__(self, callback: Callable[[MonitorEvent], None], level: str = "warning", name: str = "callback"):
        self.callback = callback
        self.level = level
        self.name = name

    def deliver(self, events: list[MonitorEvent]) -> None:
        for event in events:
            self.callback(event)


class BellSink:
    """The terminal bell: tmux marks the window, a terminal may flash or beep."""

    slow = False
    name = "bell"

    def __init__(self, stream: TextIO | None = None, level: str = "warning"):
        self.stream = stream or sys.stderr
        self.level = level

    def deliver(self, events: list[MonitorEvent]) -> None:
        if events:
            self.stream.write("\a")
            self.stream.flush()


class EmailSink:
    """One email per batch of alerts (a power cut trips many keys at once: one message, not 30)."""

    slow = True

    def __init__(self, settings: EmailSettings, subject_prefix: str = "[vison monitor]"):
        self.settings = settings
        self.level = settings.level
        self.name = f"email via {settings.host}:{settings.port}"
        self.subject_prefix = subject_prefix

    def message(self, events: list[MonitorEvent]) -> EmailMessage:
        worst = max(events, key=lambda e: ("info", "warning", "critical").index(e.severity))
        subject = f"{worst.severity.upper()} {worst.message()}"
        if len(events) > 1:
            subject += f" (+{len(events) - 1} more)"
        message = EmailMessage()
        message["Subject"] = f"{self.subject_prefix} {subject}"[:200]
        message["From"] = self.settings.sender
        message["To"] = ", ".join(self.settings.to)
        body = "\n".join(format_line(e) for e in events)
        body += "\n\nAs JSON, one event a line:\n" + "\n".join(e.to_json() for e in events) + "\n"
        message.set_content(body)
        return message

    def deliver(self, events: list[MonitorEvent]) -> None:
        s = self.settings
        with smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds) as smtp:
            if s.starttls:
                smtp.starttls()
            if s.username:
                smtp.login(s.username, os.environ.get(s.password_env or "", ""))
            smtp.send_message(self.message(events))


class CommandSink:
    """Runs the site's command once per event with the event as JSON on stdin (e.g. to send an SMS)."""

    slow = True

    def __init__(self, settings: CommandSettings):
        self.settings = settings
        self.level = settings.level
        self.name = f"command {settings.argv[0]}"

    def deliver(self, events: list[MonitorEvent]) -> None:
        for event in events:
            try:
                done = subprocess.run(list(self.settings.argv), input=event.to_json() + "\n", text=True,
                                      capture_output=True, timeout=self.settings.timeout_seconds)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"no answer after {self.settings.timeout_seconds:g} s") from None
            except OSError as exc:
                raise RuntimeError(exc.strerror or str(exc)) from None
            if done.returncode != 0:
                err = (done.stderr or "").strip().splitlines()
                raise RuntimeError(f"exit status {done.returncode}" + (f": {err[-1]}" if err else ""))


class AlertDispatcher:
    """Routes each batch of events to every sink whose level it reaches."""

    def __init__(self, sinks: Iterable[AlertSink] = (), on_failure: Callable[[MonitorEvent], None] | None = None,
                 batch_seconds: float = 1.0):
        self.sinks: list[AlertSink] = list(sinks)
        self.batch_seconds = batch_seconds
        self.on_failure = on_failure
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._deliver_lock = threading.RLock()  # scanner and backup threads both emit
        # sinks failing now (id -> reason): a failure is reported once, on the other sinks, until the
        # sink works again; never to the failing sink itself (a log on a full disk would otherwise
        # report its own failure to itself, forever)
        self._failing: dict[int, str] = {}

    def add(self, sink: AlertSink) -> None:
        self.sinks.append(sink)

    def dispatch(self, events: list[MonitorEvent]) -> None:
        for sink in self.sinks:
            chosen = [e for e in events if severity_at_least(e.severity, sink.level)
                      and not (isinstance(e, AlertDeliveryFailed) and e.sink == sink.name)]
            if sink.slow:
                # a failed delivery must not trigger further deliveries (email down -> alert by email...)
                chosen = [e for e in chosen if not isinstance(e, AlertDeliveryFailed)]
            if not chosen:
                continue
            if sink.slow:
                self._start_worker()
                self._queue.put((sink, chosen))
            else:
                with self._deliver_lock:
                    self._deliver(sink, chosen)

    def _deliver(self, sink: AlertSink, events: list[MonitorEvent]) -> None:
        try:
            sink.deliver(events)
        except Exception as exc:  # any sink failure is reported (once), never fatal
            reason = str(exc) or type(exc).__name__
            with self._lock:
                first = id(sink) not in self._failing
                self._failing[id(sink)] = reason
            if first and self.on_failure is not None:
                self.on_failure(AlertDeliveryFailed(sink=sink.name, reason=reason))
            return
        if id(sink) in self._failing:
            with self._lock:
                reason = self._failing.pop(id(sink), None)
            if reason is not None and self.on_failure is not None:
                self.on_failure(MonitorNotice(text=f"alert by {sink.name} works again (it failed: {reason}); "
                                              "events in between did not reach it", level="warning"))

    def failing(self) -> dict[str, str]:
        """Sinks failing now: name -> reason."""
        with self._lock:
            return {s.name: self._failing[id(s)] for s in self.sinks if id(s) in self._failing}

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="vison-alerts", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            items = [self._queue.get()]
            if items[0] is not None:
                time.sleep(self.batch_seconds)  # let the rest of a burst arrive: one email for all
                while True:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            batches: dict[int, tuple[AlertSink, list[MonitorEvent]]] = {}
            for item in items:
                if item is not None:
                    sink, events = item
                    batches.setdefault(id(sink), (sink, []))[1].extend(events)
            for sink, events in batches.values():
                self._deliver(sink, events)
            for _ in items:
                self._queue.task_done()
            if None in items:
                return

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until queued deliveries are done (True) or `timeout` passes (False)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=1)
