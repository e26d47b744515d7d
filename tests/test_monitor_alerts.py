"""Where alerts go: the log, the terminal, email (through a stub SMTP server), a user command."""

import email
import io
import json
import socketserver
import sys
import threading
import time

import pytest

from engine.campaign.chamber import load_chamber
from engine.formats.geometry import SMALL
from engine.monitor import (AlertDeliveryFailed, AlertDispatcher, BellSink, CallbackSink, CommandSettings,
                            CommandSink, EmailSettings, EmailSink, HKOutOfLimits, Monitor,
                            MonitorNotice, MonitorSettings, StreamSink)
from engine.sim.elvis import SimulationRequest, simulate
from engine.sim.housekeeping import HKExcursion

FAST = MonitorSettings(settle_seconds=0.1, poll_seconds=0.1, polling="events")


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: greeting, EHLO, MAIL, RCPT, DATA, QUIT."""

    def handle(self):
        self.wfile.write(b"220 stub ESMTP\r\n")
        in_data, lines, envelope = False, [], {"rcpt": []}
        for raw in self.rfile:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if in_data:
                if line == ".":
                    self.server.messages.append({**envelope, "data": "\n".join(lines)})
                    in_data, lines = False, []
                    self.wfile.write(b"250 queued\r\n")
                else:
                    lines.append(line[1:] if line.startswith("..") else line)
                continue
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250 stub\r\n")
            elif verb == "MAIL":
                envelope["from"] = line
                self.wfile.write(b"250 ok\r\n")
            elif verb == "RCPT":
                envelope["rcpt"].append(line)
                self.wfile.write(b"250 ok\r\n")
            elif verb == "DATA":
                in_data = True
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.daemon_threads = True
    server.messages = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def excursion_day(tmp_path_factory):
    request = SimulationRequest(tests=("BIAS01",), out=tmp_path_factory.mktemp("sim"),
                                chamber=load_chamber("B_NOSTROMO"), geometry=SMALL, jobs=1,
                                hk_excursions=(HKExcursion.parse("CCD1_TEMP_T=-246@1003"),
                                               HKExcursion.parse("CCD2_OD_T=25.5@1006")))
    day = simulate(request).day_folder
    time.sleep(0.15)
    return day


def test_critical_alert_by_email_through_the_configured_smtp_server(excursion_day, tmp_path, smtp_server):
    port = smtp_server.server_address[1]
    settings = EmailSettings(host="127.0.0.1", port=port, sender="monitor@lab.example", to=("ops@lab.example",))
    monitor = Monitor(excursion_day, FAST, state_path=tmp_path / "state.json")
    monitor.dispatcher.batch_seconds = 0.05
    monitor.add_sink(EmailSink(settings))
    monitor.run_once()  # closing flushes the queued deliveries
    assert len(smtp_server.messages) == 1  # only the critical one: the OD excursion is a warning
    sent = smtp_server.messages[0]
    assert "ops@lab.example" in sent["rcpt"][0]
    message = email.message_from_string(sent["data"])
    assert message["Subject"].startswith("[vison monitor] CRITICAL OBSID 1003 CCD1_TEMP_T = -246")
    body = message.get_payload(decode=True).decode()  # long JSON lines travel quoted-printable
    event = json.loads(next(line for line in body.splitlines() if line.startswith("{")))
    assert (event["kind"], event["key"], event["obsid"], event["value"]) == ("hk_out_of_limits", "CCD1_TEMP_T",
                                                                             1003, -246.0)


def test_email_batches_a_burst_into_one_message(smtp_server):
    port = smtp_server.server_address[1]
    sink = EmailSink(EmailSettings(host="127.0.0.1", port=port, sender="m@x.org", to=("a@x.org",), level="warning"))
    dispatcher = AlertDispatcher([sink], batch_seconds=0.2)
    for i in range(3):
        dispatcher.dispatch([MonitorNotice(text=f"trouble {i}", level="warning")])
    dispatcher.close()
    assert len(smtp_server.messages) == 1
    assert "(+2 more)" in email.message_from_string(smtp_server.messages[0]["data"])["Subject"]


def test_user_command_gets_each_alert_as_json_on_stdin(excursion_day, tmp_path):
    out = tmp_path / "received.jsonl"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read())"
    monitor = Monitor(excursion_day, FAST, state_path=tmp_path / "state.json")
    monitor.dispatcher.batch_seconds = 0.0
    monitor.add_sink(CommandSink(CommandSettings(argv=(sys.executable, "-c", script), level="warning")))
    monitor.run_once()
    received = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["key"], e["obsid"], e["status"]) for e in received] == [
        ("CCD1_TEMP_T", 1003, "critical"), ("CCD2_OD_T", 1006, "warning")]
    assert received[1]["limit_kind"] == "R" and received[1]["path"].endswith(".txt")


def test_a_failing_command_is_reported_not_fatal(excursion_day, tmp_path):
    events = []
    monitor = Monitor(excursion_day, FAST, state_path=tmp_path / "state.json")
    monitor.dispatcher.batch_seconds = 0.0
    monitor.subscribe(events.append)
    failing = "import sys; sys.stderr.write('gateway down\\n'); sys.exit(3)"
    monitor.add_sink(CommandSink(CommandSettings(argv=(sys.executable, "-c", failing))))
    monitor.run_once()
    failures = [e for e in events if isinstance(e, AlertDeliveryFailed)]
    assert len(failures) == 1 and "exit status 3: gateway down" in failures[0].reason
    assert any(isinstance(e, HKOutOfLimits) for e in events)


def test_log_file_bell_and_console(excursion_day, tmp_path):
    log = tmp_path / "logs" / "monitor.log"
    bell, console, notified = io.StringIO(), io.StringIO(), []
    monitor = Monitor(excursion_day, FAST, state_path=tmp_path / "state.json", log_path=log)
    monitor.add_sink(BellSink(bell))
    monitor.add_sink(StreamSink(console))
    monitor.subscribe(notified.append, level="critical")
    monitor.run_once()
    text = log.read_text()
    assert "CRITICAL  OBSID 1003 CCD1_TEMP_T = -246 C" in text and "monitor stopped (once)" in text
    assert "copied" not in console.getvalue()  # routine details stay out of the terse console
    assert "frame complete" in text  # but the log keeps everything
    assert bell.getvalue() == "\a"  # one ring per batch holding a warning or worse (both came in one)
    assert [e.key for e in notified] == ["CCD1_TEMP_T"]


def test_dispatcher_levels_and_a_broken_callback():
    seen, failures = [], []

    def broken(_event):
        raise RuntimeError("screen gone")

    dispatcher = AlertDispatcher([CallbackSink(seen.append, "warning"), CallbackSink(broken, "info", "app")],
                                 on_failure=failures.append)
    dispatcher.dispatch([MonitorNotice(text="fyi"), MonitorNotice(text="hm", level="warning")])
    assert [e.text for e in seen] == ["hm"]
    assert [f.sink for f in failures] == ["app"] and "screen gone" in failures[0].reason
