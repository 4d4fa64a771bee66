"""What ``sharing-audit up`` shows a person at a terminal: one live line of what the
pipeline has done (events recorded, decisions by kind, alerts, lag), with the worker's
warnings and errors printed readably above it. The worker's JSON log goes to a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import orjson
from rich.text import Text

from pipeline.ledger.outbox import PENDING, SENT, SET_ASIDE, SUPERSEDED, alert_counts
from pipeline.ledger.queries import decisions_by_verdict
from pipeline.ledger.store import Ledger
from pipeline.transport.kafka import Lag

#: Log levels a person at the terminal is shown; the rest stay in the file.
SHOWN_LEVELS = ("warning", "error", "critical")
VERDICTS = ("allowed", "review", "breach", "rejected")


def status_line(
    decisions: dict[str, int] | None, alerts: dict[str, int] | None, lag: int | None
) -> Text:
    """``recorded 1,204 events: allowed 1,100 · review 60 · breach 40 · rejected 4 |
    alerts 38 sent, 2 waiting | lag 0``; what is not known yet is said so."""
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

    def __init__(self, ledger: Ledger, log_file: Path, lag: Lag, log_from: int = 0) -> None:
        self.ledger = ledger
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
        except Exception:  # no ledger yet: the worker is still creating it
            decisions = alerts = None
        return status_line(decisions, alerts, self.lag.records())

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
