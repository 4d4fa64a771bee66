"""The alert relay: from the outbox to ``sharing.alerts``, marked sent only once acked.

Each alert is keyed by its ledger ``seq``; a relay that dies between the broker's ack and
the mark sends the alert again, and a consumer recognises it by the same ``seq``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents.sink import LedgerSink
from pipeline.ledger.outbox import SUPERSEDED, due_alerts, mark_relayed
from pipeline.logging import get_logger

log = get_logger(__name__)


async def relay_alerts(sink: LedgerSink, topic: Any, hold_seconds: float, limit: int = 500) -> int:
    """Send the alerts that are due; how many were sent. Failures wait for the next round."""
    ledger = sink.writer.ledger
    try:
        due = await sink.call(due_alerts, ledger, hold_seconds, limit)
        futures = []
        for alert in due.send:
            headers = [("severity", alert.severity.encode())]
            futures.append(
                await topic.send(key=str(alert.seq).encode(), value=alert.body, headers=headers)
            )
        await asyncio.gather(*futures)
        await sink.call(mark_relayed, ledger, [alert.seq for alert in due.send])
        await sink.call(mark_relayed, ledger, due.superseded, SUPERSEDED)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the next round tries again; nothing is lost meanwhile
        log.warning("relay_failed", error=type(exc).__name__)
        return 0
    if due.send or due.superseded:
        log.info("alerts_relayed", sent=len(due.send), superseded=len(due.superseded))
    return len(due.send)
