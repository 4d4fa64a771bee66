"""Erasing a pupil's identifiers from the ledger: their identity row deleted, the erasure
recorded in the chain, and the bytes the row leaves behind in the database overwritten.

The identity row is the one place a pupil's UPN and date of birth are kept; every hashed
row names the pupil by pseudonym only. So an erasure deletes that row and changes no
leaf: ``ledger verify``, checkpoints, inclusion proofs and receipts issued before all
still verify. The erasure itself is an entry (who, why, under which rule, how many
entries name the pupil; never a UPN), appended in the same transaction as the delete.

A pupil first recorded since migration 0011 has a random pseudonym, tied to the UPN only
by the row this deletes (:mod:`pipeline.ledger.pupils`). One recorded before has an HMAC
of the UPN under the key the deployment still holds, which remakes it, until the key
migration destroys that key (not built yet: see deploy/README.md, "Erasing a pupil");
that is one reason nothing outside the ledger calls :func:`erase` yet.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, select

from pipeline.ledger.entry import Entry
from pipeline.ledger.errors import LedgerError
from pipeline.ledger.store import ENTRY, IDENTITY, PUPIL, Ledger, NewEntry, now_text
from pipeline.logging import get_logger

log = get_logger(__name__)

#: The kind of the entry recording an erasure.
ERASURE = "erasure"
#: Why a pupil is erased: a request (UK GDPR Art 17), or the ledger's own retention.
RULES = ("request", "retention")
#: The longest reason kept: a sentence or two, not a case file.
MOST_REASON = 500

# A UPN's shape (a letter, eleven digits, a digit or letter), valid or not, and a date in
# any of the usual spellings: a reason is hashed for ever, so neither may be in one.
_UPN_SHAPED = re.compile(r"(?<![0-9A-Za-z])[A-Za-z]\s?(?:\d\s?){11}[0-9A-Za-z](?![0-9A-Za-z])")
_DATE_SHAPED = re.compile(r"\d{1,4}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{1,4}")


class ErasureRefused(ValueError):
    """An erasure that cannot be made as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Erased:
    """An erasure as recorded: its entry, how many entries name the pupil, and what was
    done to the bytes the deleted row left (see :func:`scrub`)."""

    seq: int
    entries: int
    scrubbed: str


def erasure_details(by: str, reason: str, rule: str, entries: int) -> dict[str, Any]:
    """What an erasure entry records; refuses a reason that could identify the pupil.

    The entry is hashed into the chain and can never be changed, so its reason must
    never carry what the erasure removes: anything shaped like a UPN or a date (a date
    of birth) is refused, naming which. A name cannot be recognised: the form asking for
    the reason says not to give one."""
    if rule not in RULES:
        raise ErasureRefused(f"rule {rule!r}: give one of {', '.join(RULES)}")
    if not by.strip():
        raise ErasureRefused("by: say who erases the pupil")
    said = " ".join(reason.split())
    if not said:
        raise ErasureRefused("reason: say why the pupil is erased")
    if len(said) > MOST_REASON:
        raise ErasureRefused(f"reason: at most {MOST_REASON} characters (it has {len(said)})")
    if _UPN_SHAPED.search(said):
        raise ErasureRefused("reason: it holds something shaped like a UPN; leave it out")
    if _DATE_SHAPED.search(said):
        raise ErasureRefused("reason: it holds a date (a date of birth, perhaps); leave it out")
    return {"by": by.strip(), "reason": said, "rule": rule, "entries": entries}


def erasure_of(connection: Any, pupil_key: str) -> int | None:
    """The seq of the entry that erased ``pupil_key``, if one did."""
    found = connection.execute(
        select(func.min(ENTRY.c.seq))
        .join(PUPIL, PUPIL.c.seq == ENTRY.c.seq)
        .where(PUPIL.c.pupil_key == pupil_key, ENTRY.c.kind == ERASURE)
    ).scalar()
    return None if found is None else int(found)


def erase(ledger: Ledger, pupil_key: str, *, by: str, reason: str, rule: str) -> Erased:
    """Delete the pupil's identity row and append the erasure's entry, in one
    transaction under the chain-head lock; then :func:`scrub` the database.

    Raises :class:`ErasureRefused` for a reason that could identify the pupil, a pupil
    no entry names, or one already erased (naming the entry that erased them)."""
    erasure_details(by, reason, rule, 0)  # refused before any lock is taken
    with ledger.locked() as connection:
        earlier = erasure_of(connection, pupil_key)
        if earlier is not None:
            raise ErasureRefused(f"this pupil was erased already, by entry {earlier}")
        entries = int(
            connection.execute(
                select(func.count()).select_from(PUPIL).where(PUPIL.c.pupil_key == pupil_key)
            ).scalar_one()
        )
        if not entries:
            raise ErasureRefused("no entry names this pupil: there is nothing to erase")
        connection.execute(delete(IDENTITY).where(IDENTITY.c.pupil_key == pupil_key))
        seq = Ledger.head(connection)[0] + 1
        details = erasure_details(by, reason, rule, entries)
        entry = Entry.act(seq, ERASURE, details, recorded_at=now_text(), pupil_keys=[pupil_key])
        ledger.append(connection, [NewEntry(entry)])
    scrubbed = scrub(ledger.engine)
    log.info("pupil_erased", seq=seq, rule=rule, entries=entries, scrubbed=scrubbed)
    return Erased(seq, entries, scrubbed)


def restored_identity_faults(connection: Any) -> list[tuple[int, str]]:
    """(erasure's seq, what is wrong) for each identity row naming a pupil an erasure
    entry erased: the row came back (a restored backup, or written behind the ledger's
    back), and with it the UPN and date of birth the erasure removed."""
    erased = (
        select(ENTRY.c.seq, PUPIL.c.pupil_key)
        .join(PUPIL, PUPIL.c.seq == ENTRY.c.seq)
        .where(ENTRY.c.kind == ERASURE)
        .subquery()
    )
    rows = connection.execute(
        select(func.min(erased.c.seq))
        .join(IDENTITY, IDENTITY.c.pupil_key == erased.c.pupil_key)
        .group_by(erased.c.pupil_key)
    ).scalars()
    fault = "an identity row names the pupil this entry erased: erase the row again"
    return [(int(seq), fault) for seq in rows]


#: How often, and how far apart, a checkpoint the readers hold back is tried again.
_TRIES, _PAUSE = 5, 0.2


#: The next transaction id: a snapshot taken from it on cannot see the deleted row.
_NEXT_XID = "SELECT xid(pg_snapshot_xmax(pg_current_snapshot()))::text"
#: How many other sessions of the server hold a snapshot older than the id given.
_OLDER_SNAPSHOTS = (
    "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
    "AND backend_xmin IS NOT NULL AND age(backend_xmin) > age(CAST(%(next)s AS xid))"
)


def scrub(engine: Engine) -> str:
    """Overwrite what deleted rows left in the database's files; says what was done.

    SQLite zeroes a deleted row where it lay (``secure_delete``, set on every
    connection), but an older copy of its page may still be in the WAL: the WAL is
    checkpointed into the database and truncated. A reader in the middle of a
    transaction holds that back; it is tried again a few times, then left to say so.
    PostgreSQL leaves a deleted row's bytes in the table's file until the space is
    reused, and plain VACUUM only marks them reusable: ``VACUUM FULL`` rewrites the
    identity table (small) into a new file and truncates the old one; ``ANALYZE`` then
    replaces the statistics kept of its columns, which sample UPNs and dates of birth
    (``pg_stats``), with ones of the rows left. It needs the table's owner: another role
    is told so. VACUUM FULL copies into the new file a deleted row that a snapshot older
    than the delete may still see (a long export here; on a busy server, a transaction
    in another of its databases was seen to do it too): it waits, as the WAL's
    checkpoint does, for the server's sessions holding one (as far as
    ``pg_stat_activity`` shows them to this role)."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            for _ in range(_TRIES):
                busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0]
                if not busy:
                    return "zeroed"
                time.sleep(_PAUSE)
        return "not yet: a reader held the WAL; it is cleared at the next checkpoint"
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            upto = {"next": connection.exec_driver_sql(_NEXT_XID).scalar_one()}
            for _ in range(_TRIES):
                if not connection.exec_driver_sql(_OLDER_SNAPSHOTS, upto).scalar():
                    connection.exec_driver_sql(f"VACUUM (FULL, ANALYZE) {IDENTITY.name}")
                    return "rewritten"
                time.sleep(_PAUSE)
    except LedgerError as exc:
        return f"not yet: VACUUM FULL {IDENTITY.name} was refused ({exc}); run it as its owner"
    return (
        "not yet: a transaction begun before the erasure could still see the row; "
        f"run VACUUM FULL {IDENTITY.name} once it has ended"
    )
