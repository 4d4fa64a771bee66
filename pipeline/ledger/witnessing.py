"""Sending the log's latest checkpoint to its witnesses (C2SP tlog-witness), with a
consistency proof from the last checkpoint each witness cosigned, and keeping their
answers: a cosignature, or a refusal. A witness that refuses a checkpoint of this log
has seen a history this one does not extend: the history was rewritten or forked.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from pipeline.ledger.checkpoints import COSIGNATURE, Signed, at_size, latest, record_cosignature
from pipeline.ledger.entry import Entry
from pipeline.ledger.store import Ledger, NewEntry, now_text
from pipeline.ledger.tree import consistency_proof
from pipeline.logging import get_logger
from pipeline.settings import WitnessSetting
from pipeline.transparency.auditor import ConsistencyProof
from pipeline.transparency.note import Note, NoteError, Verifier, cosigned_by
from schemas.alerts import WITNESS_REFUSAL, Severity
from schemas.decisions import Verdict

#: Seconds a witness has to answer: a worker submits between batches.
TIMEOUT = 5.0
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Witness:
    url: str
    verifier: Verifier


@dataclass(frozen=True, slots=True)
class Outcome:
    """A witness's answer: its cosignature line, or why it did not give one. ``refused``
    is a witness saying no (4xx); otherwise it could not be asked (down, timed out)."""

    witness: Witness
    line: str | None = None
    refused: bool = False
    why: str = ""


def witnesses_from(configured: Sequence[WitnessSetting]) -> list[Witness]:
    """The witnesses configured (``SHARING_AUDIT_WITNESSES``); ValueError naming a bad key."""
    out = []
    for item in configured:
        try:
            verifier = Verifier.parse(item.vkey)
        except NoteError as exc:
            raise ValueError(f"witness {item.url}: {exc}") from None
        out.append(Witness(item.url.rstrip("/"), verifier))
    return out


def last_cosigned(ledger: Ledger, witness: Witness) -> int:
    """The size of the last checkpoint ``witness`` cosigned for this log (0: none)."""
    with ledger.engine.connect() as connection:
        size = connection.execute(
            select(COSIGNATURE.c.size)
            .where(COSIGNATURE.c.witness == witness.verifier.name, COSIGNATURE.c.line.is_not(None))
            .order_by(COSIGNATURE.c.size.desc())
            .limit(1)
        ).scalar()
    return int(size or 0)


def request_body(ledger: Ledger, old: int, signed: Signed) -> bytes:
    """``old N``, the proof from N to the checkpoint, a blank line, the checkpoint."""
    with ledger.engine.connect() as connection:
        proof = consistency_proof(connection, old, signed.checkpoint.size)
    return ConsistencyProof(old, tuple(proof)).encode(signed.note)


def submit(ledger: Ledger, signed: Signed, witness: Witness) -> Outcome:
    """Send ``signed`` to ``witness`` and keep its answer. On 409 (the witness holds
    another size) the request is made once more from the size it holds."""
    old = min(last_cosigned(ledger, witness), signed.checkpoint.size)
    for _ in range(2):
        status, body = _post(witness, request_body(ledger, old, signed))
        if status == 409 and body.strip().isdigit() and int(body) <= signed.checkpoint.size:
            if int(body) == old:
                break
            old = int(body)
            continue
        break
    outcome = _outcome(witness, signed, status, body)
    size = signed.checkpoint.size
    if outcome.line is not None:
        record_cosignature(ledger, size, witness.verifier.name, outcome.line)
        log.info("checkpoint_cosigned", witness=witness.verifier.name, size=size)
    elif outcome.refused:
        refusing = was_refusing(ledger, witness)
        record_cosignature(ledger, size, witness.verifier.name, None, outcome.why)
        log.error(
            "witness_refused_checkpoint", witness=witness.verifier.name, size=size, why=outcome.why
        )
        if not refusing:
            raise_refusal(ledger, witness.verifier.name, size, outcome.why)
    else:
        log.warning(
            "witness_unreachable", witness=witness.verifier.name, size=size, why=outcome.why
        )
    return outcome


def was_refusing(ledger: Ledger, witness: Witness) -> bool:
    """Whether the witness's last answer was a refusal: a refusal is alerted when a
    witness starts refusing, not again for each checkpoint signed while it goes on."""
    with ledger.engine.connect() as connection:
        last = connection.execute(
            select(COSIGNATURE.c.line)
            .where(COSIGNATURE.c.witness == witness.verifier.name)
            .order_by(COSIGNATURE.c.size.desc())
            .limit(1)
        ).first()
    return last is not None and last.line is None


def raise_refusal(ledger: Ledger, witness: str, size: int, why: str) -> int:
    """Record that ``witness`` refused the checkpoint of ``size`` as a ledger entry with a
    high-severity alert (relayed on the alert topic, an incident on the DPO's desk); the
    entry's seq."""
    reason = (
        f"witness {witness} refused the log's checkpoint of size {size} ({why}): it has "
        "cosigned a history this log does not extend, so the ledger's history was "
        "rewritten or forked"
    )
    with ledger.locked() as connection:
        seq = Ledger.head(connection)[0] + 1
        details = {"witness": witness, "size": size, "why": why}
        entry = Entry.act(seq, WITNESS_REFUSAL, details, recorded_at=now_text(), reasons=[reason])
        alert = entry.alert_fields()
        alert["decision"] = Verdict.BREACH.value
        high = Severity.HIGH.value
        ledger.append(connection, [NewEntry(entry, alert=(high, {**alert, "severity": high}))])
    return seq


def _outcome(witness: Witness, signed: Signed, status: int, body: str) -> Outcome:
    if status == 200:
        cosigned = Note.parse(signed.note + body.encode())
        if cosigned_by(cosigned, witness.verifier) is None:
            return Outcome(witness, refused=True, why="its answer is not its cosignature")
        return Outcome(witness, line=body if body.endswith("\n") else body + "\n")
    if 400 <= status < 500:
        return Outcome(witness, refused=True, why=f"HTTP {status}: {body.strip()[:200]}")
    return Outcome(witness, why=f"HTTP {status}: {body.strip()[:200]}" if status else body)


def _post(witness: Witness, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{witness.url}/add-checkpoint",
        data=body,
        method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return int(answer.status), answer.read(65536).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(65536).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, f"could not be reached: {getattr(exc, 'reason', exc)}"


def publish(ledger: Ledger, signed: Signed, witnesses: list[Witness]) -> list[Outcome]:
    """Submit ``signed`` to every witness; their outcomes, in order."""
    return [submit(ledger, signed, witness) for witness in witnesses]


def current(connection: Connection, quorum: int) -> Signed | None:
    """The checkpoint served as current: the largest the log signed, or with ``quorum``
    (SHARING_AUDIT_WITNESS_QUORUM) set, the largest that many witnesses cosigned."""
    if not quorum:
        return latest(connection)
    size = connection.execute(
        select(COSIGNATURE.c.size)
        .where(COSIGNATURE.c.line.is_not(None))
        .group_by(COSIGNATURE.c.size)
        .having(func.count() >= quorum)
        .order_by(COSIGNATURE.c.size.desc())
        .limit(1)
    ).scalar()
    return None if size is None else at_size(connection, int(size))
