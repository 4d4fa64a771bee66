"""Sending the log's latest checkpoint to its witnesses (C2SP tlog-witness), with a
consistency proof from the last checkpoint each witness cosigned, and keeping their
answers: a cosignature, or a refusal. A witness that refuses a checkpoint of this log
has seen a history this one does not extend: the history was rewritten or forked.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import Connection, func, select

from pipeline.deadline_http import NoAnswer, post_within
from pipeline.ledger.log.checkpoints import (
    CHECKPOINT,
    COSIGNATURE,
    Signed,
    at_size,
    latest,
    record_cosignature,
)
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage.store import Ledger, NewEntry, now_text
from pipeline.ledger.storage.tree import consistency_proof
from pipeline.logging import get_logger
from pipeline.settings import WitnessSetting
from pipeline.transparency.auditor import ConsistencyProof
from pipeline.transparency.note import Note, NoteError, Verifier, cosigned_by, witness_verifier
from schemas.alerts import Severity
from schemas.decisions import Verdict

#: Seconds a witness has to answer each request, all of it (SHARING_AUDIT_WITNESS_DEADLINE_SECONDS).
DEADLINE = 5.0
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
            verifier = witness_verifier(item.vkey)
        except NoteError as exc:
            raise ValueError(f"witness {without_password(item.url)}: {exc}") from None
        out.append(Witness(item.url.rstrip("/"), verifier))
    return out


def witness_at(witnesses: Sequence[Witness], url: str) -> Witness | None:
    """The witness of ``witnesses`` whose address ``url`` is, however spelt: scheme and
    host in any case, the default port written or not, the path with or without its
    trailing slashes. A witness missed here would have its cosignature go unchecked."""
    wanted = _address(url)
    found = (w for w in witnesses if wanted is not None and _address(w.url) == wanted)
    return next(found, None)


def _address(url: str) -> tuple[str, str, int | None, str, str] | None:
    """What makes ``url`` the place it is; None for no URL of a place (a bad port)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    return scheme, _host(parts.hostname or ""), port, parts.path.rstrip("/"), parts.query


def _host(name: str) -> str:
    """A host's one spelling: an IP address in its shortest form, a name in lower case,
    in its ASCII (punycode) form and without the root's trailing dot."""
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        pass
    name = name.rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def without_password(url: str) -> str:
    """``url`` as it may be shown: a password in it replaced (a witness's address may
    carry one for a proxy in front of it)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


_DEFAULT_PORTS = {"http": 80, "https": 443}


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


def submit(ledger: Ledger, signed: Signed, witness: Witness, deadline: float = DEADLINE) -> Outcome:
    """Send ``signed`` to ``witness`` and keep its answer. On 409 (the witness holds
    another size) the request is made once more from the size it holds. Each request
    has ``deadline`` seconds, all told."""
    outcome = _asked(ledger, signed, witness, deadline)
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
            "witness_not_cosigned", witness=witness.verifier.name, size=size, why=outcome.why
        )
    return outcome


def _asked(ledger: Ledger, signed: Signed, witness: Witness, deadline: float) -> Outcome:
    size = signed.checkpoint.size
    old = min(last_cosigned(ledger, witness), size)
    status, body = _post(witness, request_body(ledger, old, signed), deadline)
    held = held_size(body) if status == 409 else None
    if held is not None and held != old and held <= size:
        status, body = _post(witness, request_body(ledger, held, signed), deadline)
    return _outcome(witness, signed, status, body)


def held_size(body: str) -> int | None:
    """The size a witness says it holds, from its 409 answer (``text/x.tlog.size``: the
    size in decimal digits); None when the answer is no such size."""
    text = body.strip()
    return int(text) if re.fullmatch("[0-9]{1,20}", text) else None


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
        entry = Entry.act(
            seq, EntryKind.WITNESS_REFUSAL, details, recorded_at=now_text(), reasons=[reason]
        )
        alert = entry.alert_fields()
        alert["decision"] = Verdict.BREACH.value
        high = Severity.HIGH.value
        ledger.append(connection, [NewEntry(entry, alert=(high, {**alert, "severity": high}))])
    return seq


def _outcome(witness: Witness, signed: Signed, status: int, body: str) -> Outcome:
    said = f"HTTP {status}: {shown(body)}"
    if status == 200:
        line = own_cosignature(signed, body, witness.verifier)
        if line is None:
            return Outcome(witness, refused=True, why="its answer is not its cosignature")
        return Outcome(witness, line=line)
    if status == 409 and held_size(body) is None:
        # Nonsense from the witness, not a size it holds: its fault, not a sign of a fork.
        return Outcome(witness, why=f"{said} (not the size it holds)")
    if 400 <= status < 500:
        return Outcome(witness, refused=True, why=said)
    return Outcome(witness, why=said if status else body)


def own_cosignature(signed: Signed, body: str, witness: Verifier) -> str | None:
    """The witness's cosignature line in its answer ``body``, alone, if it holds one that
    verifies. Any other line it sent is dropped: kept, one bearing the log's name and key
    id that fails would make every verifier refuse the checkpoint the log publishes."""
    try:
        note = Note.parse(signed.note + body.encode())
    except NoteError:
        return None
    if cosigned_by(note, witness) is None:
        return None
    return next(s for s in note.signatures if witness.made(s)).line()


def shown(text: str, limit: int = 200) -> str:
    """A peer's words as they may be logged and shown on a terminal: the first ``limit``
    characters, each that does not print (a terminal's control codes) as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text.strip()[:limit])


def _post(witness: Witness, body: bytes, deadline: float) -> tuple[int, str]:
    try:
        status, answer = post_within(
            f"{witness.url}/add-checkpoint", body, "text/plain; charset=utf-8", deadline
        )
    except NoAnswer as exc:
        return 0, str(exc)
    return status, answer.decode("utf-8", "replace")


def publish(
    ledger: Ledger, signed: Signed, witnesses: Sequence[Witness], deadline: float = DEADLINE
) -> list[Outcome]:
    """Submit ``signed`` to every witness at once; their outcomes, in order. Each
    witness's trouble is its own: one that is slow costs the others nothing, and one
    that breaks ``submit`` is an outcome saying so."""
    if not witnesses:
        return []
    with ThreadPoolExecutor(len(witnesses), thread_name_prefix="witness") as pool:
        return list(pool.map(lambda w: submit_alone(ledger, signed, w, deadline), witnesses))


def submit_alone(ledger: Ledger, signed: Signed, witness: Witness, deadline: float) -> Outcome:
    """:func:`submit`, any failure of it an outcome rather than an exception: a bug or a
    database error met while publishing to one witness never stops the next."""
    try:
        return submit(ledger, signed, witness, deadline)
    except Exception as exc:
        why = f"{type(exc).__name__}: {str(exc)[:200]}"
        log.error("witness_not_published", witness=witness.verifier.name, error=why)
        return Outcome(witness, why=why)


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


def witness_lag(connection: Connection, names: Sequence[str]) -> int | None:
    """How many entries of the latest checkpoint the slowest of the witnesses ``names``
    has not cosigned yet (0: all have cosigned it); None when nothing is signed yet."""
    size = connection.execute(select(func.max(CHECKPOINT.c.size))).scalar()
    if size is None:
        return None
    rows = connection.execute(
        select(COSIGNATURE.c.witness, func.max(COSIGNATURE.c.size))
        .where(COSIGNATURE.c.line.is_not(None), COSIGNATURE.c.witness.in_(list(names)))
        .group_by(COSIGNATURE.c.witness)
    )
    held: dict[str, int] = {str(name): int(cosigned) for name, cosigned in rows}
    return max((int(size) - held.get(name, 0) for name in names), default=0)
