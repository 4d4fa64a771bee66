"""What ``sharing-audit up`` and ``worker`` show a person at a terminal: one live line of
what the pipeline has done (events recorded, decisions by kind, alerts, lag), with the
worker's warnings and errors printed readably above it. The worker's JSON log goes to a
file; the worker runs as a child process that the command supervises and stops in order.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from pipeline.cli.exits import fail
from pipeline.ledger.errors import LedgerError
from pipeline.ledger.outbox import PENDING, SENT, SET_ASIDE, SUPERSEDED, alert_counts
from pipeline.ledger.queries import decisions_by_verdict
from pipeline.ledger.store import Ledger
from pipeline.ledger.witnessing import witness_lag, witnesses_from
from pipeline.settings import settings
from pipeline.transport.kafka import Lag
from pipeline.transport.processes import Pipeline

#: The worker's log on a terminal, in the working folder, unless --log-file says where.
DEFAULT_LOG_FILE = "sharing-audit-worker.log"

LogFileOption = Annotated[
    Path | None,
    typer.Option(
        "--log-file",
        help="Where the worker's JSON log goes (on a terminal, default "
        f"./{DEFAULT_LOG_FILE}; else standard output).",
    ),
]


class Stop:
    """Turns SIGINT, SIGTERM and SIGHUP (the terminal closed) into a flag, so that
    shutdown runs in order and no broker or worker outlives the command."""

    def __init__(self) -> None:
        self.event = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._set)

    def _set(self, signum: int, frame: Any) -> None:
        self.event.set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


def worker_log(console: Console, log_file: Path | None) -> tuple[Path | None, int]:
    """Where the worker's log goes (the default file on a terminal, else as given), and
    where this run's part of it starts: the file is appended to."""
    if console.is_terminal and log_file is None:
        log_file = Path(DEFAULT_LOG_FILE)
    return log_file, (log_file.stat().st_size if log_file is not None and log_file.exists() else 0)


def supervise(
    pipeline: Pipeline,
    ledger: Ledger,
    console: Console,
    stop: Stop,
    log_file: Path | None,
    log_from: int,
) -> None:
    """Until Ctrl-C (or the terminal closes); a clear exit if the worker stops on its own.
    On a terminal with the log in a file, with the live status line above."""
    if not (console.is_terminal and log_file is not None):
        ledger.engine.dispose()
        while not stop.wait(0.5):
            _fail_if_stopped(pipeline)
        return
    assert pipeline.kafka is not None
    watch = Watch(ledger, log_file, Lag(pipeline.kafka), log_from, witness_names())
    try:
        with Live(watch.line(), console=console, refresh_per_second=2) as live:
            while not stop.wait(1.0):
                for text in watch.new_lines():
                    live.console.print(text)
                live.update(watch.line())
                _fail_if_stopped(pipeline)
    finally:
        watch.close()


def witness_names() -> tuple[str, ...]:
    """The names of the witnesses the worker sends checkpoints to (none when their
    setting is wrong: the worker says what is wrong with it)."""
    try:
        return tuple(w.verifier.name for w in witnesses_from(settings().witnesses))
    except ValueError:
        return ()


def _fail_if_stopped(pipeline: Pipeline) -> None:
    worker = pipeline.worker
    assert worker is not None and worker.process is not None
    if not worker.running:
        fail(f"the worker stopped with status {worker.process.returncode}", 1)


#: Log levels a person at the terminal is shown; the rest stay in the file.
SHOWN_LEVELS = ("warning", "error", "critical")
VERDICTS = ("allowed", "review", "breach", "rejected")


def status_line(
    decisions: dict[str, int] | None,
    alerts: dict[str, int] | None,
    lag: int | None,
    witness_lag: int | None = None,
) -> Text:
    """``recorded 1,204 events: allowed 1,100 · review 60 · breach 40 · rejected 4 |
    alerts 38 sent, 2 waiting | lag 0``; what is not known yet is said so. With
    witnesses, ``| witness lag N``: the entries of the latest checkpoint that the slowest
    witness has not cosigned (a witness away or too slow shows here, never as a stall)."""
    line = Text()
    if decisions is None:
        line.append("waiting for the ledger", style="dim")
    else:
        line.append(f"recorded {sum(decisions.values()):,} events", style="bold")
        parts = [f"{verdict} {decisions.get(verdict, 0):,}" for verdict in VERDICTS]
        line.append(": " + " · ".join(parts))
    if alerts is not None:
        waiting = alerts.get(PENDING, 0)
        line.append(f" | alerts {alerts.get(SENT, 0):,} sent, {waiting:,} waiting")
        held = alerts.get(SUPERSEDED, 0)
        if held:
            line.append(f", {held:,} held back")
        if alerts.get(SET_ASIDE):
            line.append(f", {alerts[SET_ASIDE]:,} set aside", style="red")
    line.append(" | lag " + (f"{lag:,}" if lag is not None else "?"))
    if witness_lag is not None:
        line.append(f" | witness lag {witness_lag:,}", style="yellow" if witness_lag else "")
    return line


def readable(record: dict[str, Any]) -> Text | None:
    """A worker log record as a person reads it, if it is one they should see."""
    level = str(record.get("level", "")).lower()
    if level not in SHOWN_LEVELS:
        return None
    text = Text(f"{level}: ", style="red" if level != "warning" else "yellow")
    text.append(str(record.get("event", "")), style="bold")
    skip = {"event", "level", "timestamp", "logger"}
    for key, value in record.items():
        if key not in skip:
            text.append(f" {key}={value}")
    return text


class Watch:
    """The ledger, the worker's log file and the consumer group, looked at in turn."""

    def __init__(
        self,
        ledger: Ledger,
        log_file: Path,
        lag: Lag,
        log_from: int = 0,
        witnesses: Sequence[str] = (),
    ) -> None:
        self.ledger = ledger
        self.witnesses = witnesses  # their names: how far behind they are is shown
        self.log_file = log_file
        self.lag = lag
        self.log_from = log_from  # where this run's log starts: the file is appended to
        self._log: IO[bytes] | None = None
        self._partial = b""

    def line(self) -> Text:
        try:
            with self.ledger.engine.connect() as connection:
                decisions: dict[str, int] | None = decisions_by_verdict(connection)
                alerts: dict[str, int] | None = alert_counts(connection)
                behind = witness_lag(connection, self.witnesses) if self.witnesses else None
        except LedgerError:  # no ledger yet: the worker is still creating it
            decisions = alerts = behind = None
        return status_line(decisions, alerts, self.lag.records(), behind)

    def new_lines(self) -> list[Text]:
        """The worker's warnings and errors logged since the last look."""
        if self._log is None:
            try:
                self._log = self.log_file.open("rb")
                self._log.seek(self.log_from)
            except OSError:
                return []
        chunk = self._partial + self._log.read()
        *complete, self._partial = chunk.split(b"\n")
        shown = []
        for line in complete:
            # A library may write a terminal's control codes before a record: skip them.
            raw = line[line.find(b"{") :] if b"{" in line else line
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                record = {"level": "warning", "event": raw.decode(errors="replace")}
            if isinstance(record, dict) and (text := readable(record)) is not None:
                shown.append(text)
        return shown

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
        self.lag.close()
        self.ledger.engine.dispose()
