"""What ``sharing-audit up`` and ``worker`` show a person at a terminal: one live line of
what the pipeline has done (events recorded, decisions by kind, alerts, lag), with the
worker's warnings and errors printed readably above it. The worker's JSON log goes to a
file; the worker runs as a child process that the command supervises and stops in order.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Annotated, Any, Protocol

import orjson
import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from pipeline.cli.exits import fail
from pipeline.ledger.log.witnessing import witness_lag, witnesses_from
from pipeline.ledger.reading.queries import decisions_by_verdict
from pipeline.ledger.storage.errors import LedgerError
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.outbox import PENDING, SENT, SET_ASIDE, SUPERSEDED, alert_counts
from pipeline.plural import counted
from pipeline.settings import settings
from pipeline.transport.backlog import Backlog, waited
from pipeline.transport.broker import EmbeddedBroker
from pipeline.transport.processes import Pipeline, say

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
    shutdown runs in order and no broker or worker outlives the command. The first signal
    sets ``event`` (stop once what was accepted is recorded), a second ``again`` (stop at
    once)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.again = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._set)

    def _set(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            self.again.set()
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
    """Until Ctrl-C (or the terminal closes), then until every record accepted is recorded
    (a second Ctrl-C stops at once); a clear exit if the worker stops on its own, and the
    embedded broker started again if it dies. On a terminal with the log in a file, with
    the live status line above."""
    if not (console.is_terminal and log_file is not None):
        ledger.engine.dispose()
        Supervision(pipeline, stop, _Plain()).run()
        return
    assert pipeline.kafka is not None
    config = settings()
    watch = Watch(
        ledger,
        log_file,
        Backlog(pipeline.kafka),
        log_from,
        witness_names(),
        hold=config.alert_hold_seconds,
        count_duplicates=logs_batches(config.log_level),
    )
    try:
        with Live(watch.line_for(None), console=console, refresh_per_second=2) as live:
            Supervision(pipeline, stop, _Screen(live, watch)).run()
    finally:
        watch.close()


#: How long without a record recorded, while stopping, before the wait is said again.
QUIET_SECONDS = 10.0


class Shown(Protocol):
    """Where the supervisor says things and shows the pipeline's state."""

    @property
    def ledger_unavailable(self) -> bool: ...

    def say(self, message: str) -> None: ...

    def show(self, lag: int | None, stopping: Text | None) -> None: ...


class _Plain:
    """Where a pipeline not on a terminal says things: standard error, a line each."""

    ledger_unavailable = False  # the worker's log is not read here: it is on standard output

    def __init__(self, every: float = QUIET_SECONDS) -> None:
        self.every = every
        self._said_at = time.monotonic()

    def say(self, message: str) -> None:
        say(message)
        self._said_at = time.monotonic()

    def show(self, lag: int | None, stopping: Text | None) -> None:
        """No live line off a terminal: the progress while stopping is said now and then."""
        if stopping is not None and time.monotonic() - self._said_at >= self.every:
            self.say(stopping.plain)


class _Screen:
    """The live line, with the worker's warnings and what the supervisor says above it."""

    def __init__(self, live: Live, watch: Watch) -> None:
        self.live, self.watch = live, watch

    def say(self, message: str) -> None:
        self.live.console.print(Text(message, style="bold yellow"))

    def show(self, lag: int | None, stopping: Text | None) -> None:
        for text in self.watch.new_lines():
            self.live.console.print(text)
        line = self.watch.line_for(lag)
        self.live.update(Text.assemble(stopping, " | ", line) if stopping else line)

    @property
    def ledger_unavailable(self) -> bool:
        return self.watch.ledger_unavailable


class Supervision:
    """The pipeline looked at every second: the broker, the worker, the records accepted
    and not yet recorded (the last count kept: it is what a broker that dies takes with it)."""

    def __init__(self, pipeline: Pipeline, stop: Stop, out: Shown, every: float = 1.0) -> None:
        self.pipeline, self.stop, self.out, self.every = pipeline, stop, out, every
        self.lag: int | None = None
        self.quiet = QUIET_SECONDS * every  # nothing recorded this long: the wait is said

    def look(self, stopping: Text | None = None) -> int | None:
        if self.pipeline.broker_died:
            self._broker_died()
        _fail_if_stopped(self.pipeline)
        lag = self.pipeline.unrecorded()
        self.lag = lag if lag is not None else self.lag
        self.out.show(lag, stopping)
        return lag

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.look()
        self.drain()

    def drain(self) -> None:
        """Keep the worker recording until nothing accepted is left unrecorded; a second
        Ctrl-C stops at once, saying what is lost."""
        left = self.pipeline.unrecorded()
        if not left:
            return
        self.out.say(stopping_message(left))
        first, recorded_at, said_at = left, time.monotonic(), time.monotonic()
        again = self.quiet  # the wait is said after this long, then less often
        while not self.stop.again.wait(self.every):
            now = time.monotonic()
            quiet = now - recorded_at
            waiting = quiet >= self.quiet or self.out.ledger_unavailable
            if self.pipeline.broker_died:  # what it held is gone: nothing left to wait for
                self.out.say(broker_died_message(self.pipeline.embedded, left, restarting=False))
                if self.pipeline.worker is not None:
                    self.pipeline.worker.kill()  # its clients would hang on the dead broker
                return
            lag = self.look(progress_text(first, left, waiting))
            if lag == 0:
                self.out.show(0, progress_text(first, 0, waiting=False))
                self.out.say(f"all {first:,} records recorded; stopping")
                return
            if lag is not None and lag > left:  # still being sent: more to record
                first, left = first + lag - left, lag
            elif lag is not None and lag < left:
                left, recorded_at, again = lag, now, self.quiet
            elif waiting and now - said_at >= again:
                self.out.say(waiting_message(left, quiet))
                said_at, again = now, 6 * self.quiet
        self._stop_at_once()

    def _stop_at_once(self) -> None:
        left = self.pipeline.unrecorded()
        left = left if left is not None else self.lag
        worker = self.pipeline.worker
        if worker is not None:
            worker.kill()
        fail(lost_message(left, self.pipeline.embedded is not None), 1)

    def _broker_died(self) -> None:
        embedded = self.pipeline.embedded
        assert embedded is not None
        old = embedded.address
        self.out.say(broker_died_message(embedded, self.lag, restarting=True))
        address = self.pipeline.restart_broker()
        self.lag = 0
        moved = "" if address == old else f" (a new address: send events to {address})"
        self.out.say(f"broker started again: {address}{moved}, with its topics; worker restarted")


def stopping_message(left: int) -> str:
    return (
        f"stopping: {left:,} records accepted but not yet recorded; recording them first "
        "(Ctrl-C again stops at once and loses them)"
    )


def progress_text(first: int, left: int, waiting: bool) -> Text:
    """The live line's head while stopping: recorded so far and remaining."""
    text = Text(f"stopping: recorded {first - left:,} of {first:,}, {left:,} left", style="bold")
    if waiting:
        text.append(" · waiting for the ledger", style="yellow")
    return text


def waiting_message(left: int, quiet: float) -> str:
    return (
        f"still {left:,} records to record; nothing recorded for {quiet:.0f} s: waiting for "
        "the ledger (database unavailable? the worker retries; Ctrl-C again stops at once)"
    )


def lost_message(left: int | None, embedded: bool) -> str:
    """What a second Ctrl-C leaves behind, plainly."""
    count = f"{left:,}" if left is not None else "an unknown number of"
    if embedded:
        return (
            f"stopped at once: {count} records not recorded are lost (the embedded broker "
            "keeps them in memory only); their senders hold no receipt for them, so emit "
            "and watch send them again when run again"
        )
    return (
        f"stopped at once: {count} records not recorded stay on the broker; their senders "
        "hold no receipt for them yet, and the next worker records them"
    )


def broker_died_message(broker: EmbeddedBroker | None, lag: int | None, restarting: bool) -> str:
    """The embedded broker gone, and the records it took with it, plainly."""
    status = broker.process.returncode if broker is not None and broker.process else None
    held = f"{lag:,} records" if lag is not None else "the records"
    return (
        f"the embedded broker stopped (exit status {status}): it held {held} not yet "
        "recorded in memory only, now lost; senders still waiting for their receipts "
        "will send them again" + ("; starting it again" if restarting else "")
    )


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


#: How long after the worker last said the database is unavailable the line still says so
#: (its retries back off to 30 s).
UNAVAILABLE_SECONDS = 45.0
#: Log levels a person at the terminal is shown; the rest stay in the file.
SHOWN_LEVELS = ("warning", "error", "critical")
VERDICTS = ("allowed", "review", "breach", "rejected")


def status_line(
    decisions: dict[str, int] | None,
    alerts: dict[str, int] | None,
    lag: int | None,
    witness_lag: int | None = None,
    oldest_age: float | None = None,
    hold: float | None = None,
    duplicates: int | None = None,
) -> Text:
    """``recorded 1,204 events: allowed 1,100 · review 60 · breach 40 · rejected 4 | 3
    duplicates (sent again, recorded once) | alerts 38 sent, 2 held 60 s for late facts |
    awaiting receipt 12, oldest 4 s``.

    A redelivered record is counted as a duplicate (``duplicates``, this run's, when the
    worker's log says; None when it does not), not left to look like a record delivered
    and never recorded. An alert not yet sent is said to be held ``hold`` seconds for late
    facts (a consent recorded just after the referral clears it), so that one is not left
    wondering why it waits; one a late fact re-decided is not sent at all. Then the records
    the broker took that are not yet recorded, whose senders hold no receipt, and how long
    the oldest has waited; what is not known yet is said so. With witnesses, ``| witness
    lag N``: the entries of the latest checkpoint that the slowest witness has not
    cosigned (a witness away or too slow shows here, never as a stall)."""
    line = Text()
    if decisions is None:
        line.append("waiting for the ledger", style="dim")
    else:
        line.append(f"recorded {counted(sum(decisions.values()), 'event')}", style="bold")
        parts = [f"{verdict} {decisions.get(verdict, 0):,}" for verdict in VERDICTS]
        line.append(": " + " · ".join(parts))
    if duplicates:
        line.append(f" | {counted(duplicates, 'duplicate')} (sent again, recorded once)")
    if alerts is not None:
        line.append(f" | alerts {alerts.get(SENT, 0):,} sent")
        if waiting := alerts.get(PENDING, 0):
            held = f"held {hold:g} s" if hold is not None else "held"
            line.append(f", {waiting:,} {held} for late facts")
        if superseded := alerts.get(SUPERSEDED, 0):
            line.append(f", {superseded:,} not sent: a late fact re-decided the event")
        if alerts.get(SET_ASIDE):
            line.append(f", {alerts[SET_ASIDE]:,} set aside", style="red")
    line.append(" | awaiting receipt " + (f"{lag:,}" if lag is not None else "?"))
    if lag and oldest_age is not None:
        line.append(f", oldest {waited(oldest_age)}", style="yellow" if oldest_age >= 60 else "")
    if witness_lag is not None:
        line.append(f" | witness lag {witness_lag:,}", style="yellow" if witness_lag else "")
    return line


def logs_batches(level: str | None) -> bool:
    """Whether the worker, at the log level set (INFO when unset), logs each batch it
    records, with its duplicates: the live line counts them from there."""
    return logging.getLevelName((level or "INFO").upper()) in (logging.DEBUG, logging.INFO)


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
    """The ledger, the worker's log file and the consumer group, looked at in turn. With
    ``count_duplicates`` (the worker logs each batch), the records it received again are
    counted from its log; ``hold`` is how long it holds an alert, to say why one waits."""

    def __init__(
        self,
        ledger: Ledger,
        log_file: Path,
        lag: Backlog,
        log_from: int = 0,
        witnesses: Sequence[str] = (),
        hold: float | None = None,
        count_duplicates: bool = False,
    ) -> None:
        self.ledger = ledger
        self.witnesses = witnesses  # their names: how far behind they are is shown
        self.log_file = log_file
        self.lag = lag
        self.log_from = log_from  # where this run's log starts: the file is appended to
        self._log: IO[bytes] | None = None
        self._partial = b""
        self._unavailable_at = -UNAVAILABLE_SECONDS  # when the worker last said so
        self.hold = hold  # how long the worker holds an alert before sending it, if known
        # Records received again this run, as the worker's log tells (None: it does not).
        self.duplicates: int | None = 0 if count_duplicates else None

    @property
    def ledger_unavailable(self) -> bool:
        """Whether the worker said lately that it is waiting for the database."""
        return time.monotonic() - self._unavailable_at < UNAVAILABLE_SECONDS

    def line(self) -> Text:
        return self.line_for(self.lag.records())

    def line_for(self, lag: int | None) -> Text:
        """The status line with ``lag`` records not yet recorded (looked at by the caller),
        and, when some are, how long the oldest has waited."""
        oldest = None
        if lag:
            seen = self.lag.awaiting(wait=0.5)
            oldest = seen.oldest_age if seen is not None else None
        try:
            with self.ledger.engine.connect() as connection:
                decisions: dict[str, int] | None = decisions_by_verdict(connection)
                alerts: dict[str, int] | None = alert_counts(connection)
                behind = witness_lag(connection, self.witnesses) if self.witnesses else None
        except LedgerError:  # no ledger yet: the worker is still creating it
            decisions = alerts = behind = None
        return status_line(decisions, alerts, lag, behind, oldest, self.hold, self.duplicates)

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
            if isinstance(record, dict) and record.get("event") == "database_unavailable":
                self._unavailable_at = time.monotonic()
            if isinstance(record, dict) and record.get("event") == "batch_recorded":
                self._count_duplicates(record.get("duplicates"))
            if isinstance(record, dict) and (text := readable(record)) is not None:
                shown.append(text)
        return shown

    def _count_duplicates(self, found: object) -> None:
        if self.duplicates is not None and isinstance(found, int):
            self.duplicates += found

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
        self.lag.close()
        self.ledger.engine.dispose()
