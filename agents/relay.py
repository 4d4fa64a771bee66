"""The alert relay: from the outbox to ``sharing.alerts``, marked sent only once acked.

Each alert is keyed by its ledger ``seq``; a relay that dies between the broker's ack and
the mark sends the alert again, and a consumer recognises it by the same ``seq``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents.sink import LedgerSink
from pipeline.ledger.outbox import mark_relayed, pending_alerts
from pipeline.logging import get_logger

log = get_logger(__name__)


async def relay_alerts(sink: LedgerSink, topic: Any, limit: int = 500) -> int:
    """Send the pending alerts; how many were sent. Failures wait for the next round."""
    ledger = sink.writer.ledger
    try:
        pending = await sink.call(pending_alerts, ledger, limit)
        if not pending:
            return 0
        futures = []
        for alert in pending:
            headers = [("severity", alert.severity.encode())]
            futures.append(
                await topic.send(key=str(alert.seq).encode(), value=alert.body, headers=headers)
            )
        await asyncio.gather(*futures)
        await sink.call(mark_relayed, ledger, [alert.seq for alert in pending])
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the next round tries again; nothing is lost meanwhile
        log.warning("relay_failed", error=type(exc).__name__)
        return 0
    log.info("alerts_relayed", count=len(pending), last_seq=pending[-1].seq)
    return len(pending)
