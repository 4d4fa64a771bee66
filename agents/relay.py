"""The alert relay: from the outbox to ``sharing.alerts``, marked sent only once acked.

Each alert is keyed by its ledger ``seq``; a relay that dies between the broker's ack and
the mark sends the alert again, and a consumer recognises it by the same ``seq``.

One alert that cannot be sent never holds back the others: each send stands alone, and
an alert the broker refuses for itself (too large, or refused round after round while
others go through) is set aside: marked ``set_aside`` in the outbox, logged as
``alert_set_aside`` with its seq and why, and counted by ``ledger stats``. Its entry stays
in the ledger and on the desk; only its copy on the topic is missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agents.sink import LedgerSink
from pipeline.ledger.writing.outbox import SENT, SET_ASIDE, SUPERSEDED, PendingAlert
from pipeline.logging import get_logger
from schemas.alerts import MAX_ALERT_BYTES

log = get_logger(__name__)

#: Rounds an alert may fail while others in the same round are sent, before it is set aside.
STRIKES = 3
#: Errors (by class name, as kafka clients name them) that concern one record alone.
RECORD_ERRORS = frozenset(
    {
        "MessageSizeTooLargeError",
        "RecordTooLargeError",
        "InvalidRecordError",
        "CorruptRecordError",
        "SerializationError",
    }
)


class SendFailed(NamedTuple):
    """Why one alert was not sent: the error's class name, as Kafka clients name them (what
    decides whether it concerns the alert alone), and what else is known."""

    error: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.error}: {self.detail}" if self.detail else self.error


@dataclass(slots=True)
class AlertRelay:
    """Sends due alerts round by round; remembers which ones keep failing alone."""

    sink: LedgerSink
    topic: Any
    hold_seconds: float
    limit: int = 500
    strikes: dict[int, int] = field(default_factory=dict)

    async def round(self) -> int:
        """Send the alerts that are due; how many were sent. A failure that concerns every
        alert (the broker away) waits for the next round; nothing is lost meanwhile."""
        try:
            due = await self.sink.due_alerts(self.hold_seconds, self.limit)
            sent, failed = await self._send(due.send)
            for seq in sent:  # an alert that failed before and went now owes nothing
                self.strikes.pop(seq, None)
            aside = self._set_aside(failed, any_sent=bool(sent))
            await self.sink.mark_relayed(sent, SENT)
            await self.sink.mark_relayed(aside, SET_ASIDE)
            await self.sink.mark_relayed(due.superseded, SUPERSEDED)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next round tries again; nothing is lost meanwhile
            log.warning("relay_failed", error=type(exc).__name__)
            return 0
        if sent or due.superseded:
            log.info("alerts_relayed", sent=len(sent), superseded=len(due.superseded))
        return len(sent)

    async def _send(self, alerts: list[PendingAlert]) -> tuple[list[int], dict[int, SendFailed]]:
        """Every alert sent at once, each acknowledged or failed on its own."""
        failed: dict[int, SendFailed] = {}
        waiting: list[tuple[int, Any]] = []
        for alert in alerts:
            if len(alert.body) > MAX_ALERT_BYTES:
                failed[alert.seq] = SendFailed("RecordTooLargeError", f"{len(alert.body):,} bytes")
                continue
            headers = [("severity", alert.severity.encode())]
            try:
                future = await self.topic.send(
                    key=str(alert.seq).encode(), value=alert.body, headers=headers
                )
            except Exception as exc:
                failed[alert.seq] = SendFailed(type(exc).__name__)
                continue
            waiting.append((alert.seq, future))
        results = await asyncio.gather(*(f for _, f in waiting), return_exceptions=True)
        sent = []
        for (seq, _), result in zip(waiting, results, strict=True):
            if isinstance(result, BaseException):
                failed[seq] = SendFailed(type(result).__name__)
            else:
                sent.append(seq)
        return sent, failed

    def _set_aside(self, failed: dict[int, SendFailed], any_sent: bool) -> list[int]:
        """The failed alerts to give up on: refused for themselves, or failing alone."""
        aside = []
        for seq, error in failed.items():
            if any_sent:
                self.strikes[seq] = self.strikes.get(seq, 0) + 1
            if error.error in RECORD_ERRORS or self.strikes.get(seq, 0) >= STRIKES:
                log.error("alert_set_aside", seq=seq, error=str(error))
                self.strikes.pop(seq, None)
                aside.append(seq)
        return aside
