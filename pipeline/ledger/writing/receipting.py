"""The receipt the log owes the sender of each record it handled, made from the outcome
of that record once the transaction recording it has committed.

Every record read from a topic gets one, whatever became of it: decided, a redelivery
(naming the entry that first recorded its event), an id reused, rejected, or not even
readable. A re-evaluation is the log's own doing, not a record someone sent, and gets
none. A record that did not come from a topic (``check --db``, a file's line) has no
sender waiting for one.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.engine import Outcome
from pipeline.policy.intake import event_key
from pipeline.transparency.delivery import TOPIC_NAME, DeliveryReceipt, sign_receipt
from pipeline.transparency.note import Signer
from schemas.decisions import RuleId


def receipt_outcome(outcome: Outcome) -> str:
    """What a receipt says became of the record: its decision, or ``duplicate`` for a
    redelivery, or ``id_reused`` for an id already recorded with other content."""
    if outcome.kind == "duplicate":
        return "duplicate"
    if RuleId.EVENT_ID_REUSED in outcome.decision.rules:
        return "id_reused"
    return outcome.decision.decision.value


def receipt_for(outcome: Outcome, origin: str, at: int) -> DeliveryReceipt | None:
    """The receipt for the record behind ``outcome``, or None if it is owed none."""
    position = outcome.position
    if (
        outcome.kind == "reevaluation"
        or outcome.seq is None
        or outcome.leaf is None
        or position is None
        or position.topic is None
        or not TOPIC_NAME.fullmatch(position.topic)
        or position.partition is None
        or position.offset is None
    ):
        return None
    return DeliveryReceipt(
        origin=origin,
        event_id=event_key(outcome.event_id),
        topic=position.topic,
        partition=position.partition,
        offset=position.offset,
        seq=outcome.seq,
        leaf=outcome.leaf,
        decision=receipt_outcome(outcome),
        time=at,
    )


def signed_receipts(outcomes: Sequence[Outcome], log: Signer, at: int) -> list[bytes | None]:
    """Each outcome's receipt signed by the log (None where none is owed), in order. Only
    to be called once the transaction recording them has committed: a receipt is the
    log's word that the entry is there."""
    out: list[bytes | None] = []
    for outcome in outcomes:
        receipt = receipt_for(outcome, log.name, at)
        out.append(None if receipt is None else sign_receipt(receipt, log))
    return out
