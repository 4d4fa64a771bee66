"""The alert relay: from the outbox to ``sharing.alerts``, marked sent only once acked.

Each alert is keyed by its ledger ``seq``; a relay that dies between the broker's ack and
the mark sends the alert again, and a consumer recognises it by the same ``seq``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents.sink import LedgerSink
from pipeline.ledger.outbox import SENT, SUPERSEDED
from pipeline.logging import get_logger

log = get_logger(__name__)


async def relay_alerts(sink: LedgerSink, topic: Any, hold_seconds: float, limit: int = 500) -> int:
    """Send the alerts that are due; how many were sent. Failures wait for the next round."""
    try:
        due = await sink.due_alerts(hold_seconds, limit)
        futures = []
        for alert in due.send:
            headers = [("severity", alert.severity.encode())]
            futures.append(
                await topic.send(key=str(alert.seq).encode(), value=alert.body, headers=headers)
            )
        await asyncio.gather(*futures)
        await sink.mark_relayed([alert.seq for alert in due.send], SENT)
        await sink.mark_relayed(due.superseded, SUPERSEDED)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the next round tries again; nothing is lost meanwhile
        log.warning("relay_failed", error=type(exc).__name__)
        return 0
    if due.send or due.superseded:
        log.info("alerts_relayed", sent=len(due.send), superseded=len(due.superseded))
    return len(due.send)
