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
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, delete, func, select

from pipeline.ledger.entry import Entry
from pipeline.ledger.errors import LedgerError
from pipeline.ledger.store import ENTRY, IDENTITY, PUPIL, Ledger, NewEntry, any_of, now_text
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
    return erasures_of(connection, [pupil_key]).get(pupil_key)


def erase(ledger: Ledger, pupil_key: str, *, by: str, reason: str, rule: str) -> Erased:
    """Delete the pupil's identity row and append the erasure's entry, in one
    transaction under the chain-head lock; then :func:`scrub` the database.

    Raises :class:`ErasureRefused` for a reason that could identify the pupil, a pupil
    no entry names, or one already erased (naming the entry that erased them)."""
    return erase_many(ledger, [pupil_key], by=by, reason=reason, rule=rule)[pupil_key]


def erase_many(
    ledger: Ledger,
    pupil_keys: Sequence[str],
    *,
    by: str,
    reason: str,
    rule: str,
    skip_erased: bool = False,
) -> dict[str, Erased]:
    """Erase every one of ``pupil_keys`` as :func:`erase` does one: their identity rows
    deleted and an erasure entry each, in one transaction under the chain-head lock, then
    one :func:`scrub`; the erasures by pupil, in the order given.

    One transaction for the lot: a thousand pupils let go by the ledger's retention cost
    one lock, one append and one rewrite of the identity table, not a thousand. Refused
    whole (nothing erased) as :func:`erase` refuses any one of them; with
    ``skip_erased``, a pupil already erased (by another worker's round, say) is passed
    over instead, and is not in the answer."""
    erasure_details(by, reason, rule, 0)  # refused before any lock is taken
    keys = list(dict.fromkeys(pupil_keys))
    if not keys:
        return {}
    with ledger.locked() as connection:
        earlier = erasures_of(connection, keys)
        if earlier and not skip_erased:
            raise ErasureRefused(f"this pupil was erased already, by entry {min(earlier.values())}")
        keys = [key for key in keys if key not in earlier]
        named = entries_naming(connection, keys)
        if any(not named.get(key) for key in keys):
            raise ErasureRefused("no entry names this pupil: there is nothing to erase")
        if not keys:
            return {}
        connection.execute(delete(IDENTITY).where(any_of(connection, IDENTITY.c.pupil_key, keys)))
        head = Ledger.head(connection)[0]
        recorded_at = now_text()
        made: list[NewEntry] = []
        for seq, key in enumerate(keys, head + 1):
            details = erasure_details(by, reason, rule, named[key])
            entry = Entry.act(seq, ERASURE, details, recorded_at=recorded_at, pupil_keys=[key])
            made.append(NewEntry(entry))
        ledger.append(connection, made)
    scrubbed = scrub(ledger.engine)
    erased = {
        key: Erased(new.entry.seq, named[key], scrubbed)
        for key, new in zip(keys, made, strict=True)
    }
    seqs = [one.seq for one in erased.values()]
    if len(seqs) == 1:
        (one,) = erased.values()
        log.info("pupil_erased", seq=one.seq, rule=rule, entries=one.entries, scrubbed=scrubbed)
    else:  # one line for the lot: a thousand lines would say no more
        entries = sum(one.entries for one in erased.values())
        log.info(
            "pupils_erased",
            pupils=len(seqs),
            first_seq=seqs[0],
            last_seq=seqs[-1],
            rule=rule,
            entries=entries,
            scrubbed=scrubbed,
        )
    return erased


def erased_pupils(connection: Any) -> dict[str, int]:
    """Every erased pupil's pseudonym, with the seq of the entry that erased them: read
    from the erasure entries alone, found through their own index (migration 0012), so
    the answer costs as many rows as there were erasures, whatever the ledger's size."""
    erased: dict[str, int] = {}
    rows = connection.execute(
        select(ENTRY.c.seq, ENTRY.c.pupil_keys)
        .where(ENTRY.c.kind == ERASURE)
        .order_by(ENTRY.c.seq.desc())
    )
    for seq, keys in rows:
        erased.update(dict.fromkeys(orjson.loads(keys), int(seq)))  # the earliest stays
    return erased


def erasures_of(connection: Any, pupil_keys: Sequence[str]) -> dict[str, int]:
    """The seq of the entry that erased each of ``pupil_keys`` erased already."""
    if not pupil_keys:
        return {}
    erased = erased_pupils(connection)
    return {key: erased[key] for key in pupil_keys if key in erased}


def entries_naming(connection: Any, pupil_keys: Sequence[str]) -> dict[str, int]:
    """How many entries name each of ``pupil_keys`` (those no entry names are left out)."""
    if not pupil_keys:
        return {}
    rows = connection.execute(
        select(PUPIL.c.pupil_key, func.count())
        .where(any_of(connection, PUPIL.c.pupil_key, pupil_keys))
        .group_by(PUPIL.c.pupil_key)
    )
    return {key: int(n) for key, n in rows}


class ErasingSchools:
    """Which schools have erased a pupil (an erasure entry names a pupil some entry of the
    school names), kept by a writer for as long as it runs: each time it is asked, only
    the erasures appended since the last time are read (through their own index,
    migration 0012), so asking costs nothing that grows with the ledger or with how many
    pupils were ever erased. Erasures are never undone, so what it holds stays true."""

    def __init__(self) -> None:
        self.schools: set[str] = set()
        self.read_to = 0  # the seq of the last erasure read

    def among(self, connection: Any, schools: Collection[str]) -> set[str]:
        """Which of ``schools`` have erased a pupil."""
        rows = connection.execute(
            select(ENTRY.c.seq, ENTRY.c.pupil_keys)
            .where(ENTRY.c.kind == ERASURE, ENTRY.c.seq > self.read_to)
            .order_by(ENTRY.c.seq)
        ).all()
        if rows:
            erased = [key for _, keys in rows for key in orjson.loads(keys)]
            named = connection.execute(
                select(ENTRY.c.school)
                .join(PUPIL, PUPIL.c.seq == ENTRY.c.seq)
                .where(any_of(connection, PUPIL.c.pupil_key, erased), ENTRY.c.school.is_not(None))
                .distinct()
            )
            self.schools.update(str(school) for (school,) in named)
            self.read_to = int(rows[-1][0])
        return self.schools & set(schools)


def restored_identities(connection: Any) -> dict[str, int]:
    """The seq of the erasure of each pupil an identity row names that an erasure entry
    erased: the row came back (a restored backup, or written behind the ledger's back),
    and with it the UPN and date of birth the erasure removed."""
    erased = erased_pupils(connection)
    if not erased:
        return {}
    rows = connection.execute(
        select(IDENTITY.c.pupil_key).where(any_of(connection, IDENTITY.c.pupil_key, list(erased)))
    )
    return {key: erased[key] for (key,) in rows}


def restored_identity_faults(connection: Any) -> list[tuple[int, str]]:
    """(erasure's seq, what is wrong) for each identity row an erasure removed that came
    back (:func:`restored_identities`)."""
    fault = "an identity row names the pupil this entry erased: erase the row again"
    return [(seq, fault) for seq in sorted(restored_identities(connection).values())]


def erase_again(ledger: Ledger) -> int:
    """Delete again every identity row an erasure removed that came back, and
    :func:`scrub` what they leave; how many. Their erasures are in the chain already: no
    entry is appended (``ledger verify`` stops naming them)."""
    with ledger.locked() as connection:
        back = list(restored_identities(connection))
        if back:
            connection.execute(
                delete(IDENTITY).where(any_of(connection, IDENTITY.c.pupil_key, back))
            )
    if back:
        scrub(ledger.engine)
        log.info("restored_identities_erased_again", rows=len(back))
    return len(back)


#: How often, and how far apart, a checkpoint the readers hold back is tried again.
_TRIES, _PAUSE = 5, 0.2


def scrub(engine: Engine) -> str:
    """Overwrite what deleted rows left in the database's files; says what was done.

    SQLite zeroes a deleted row where it lay (``secure_delete``, set on every
    connection), but an older copy of its page may still be in the WAL: the WAL is
    checkpointed into the database and truncated. A reader in the middle of a
    transaction holds that back; it is tried again a few times, then left to say so.
    PostgreSQL leaves a deleted row's bytes in the table's file until the space is
    reused, and plain VACUUM only marks them reusable: ``VACUUM FULL`` rewrites the
    identity table (small) into a new file and truncates the old one. It needs the
    table's owner: another role is told so."""
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
            connection.exec_driver_sql(f"VACUUM FULL {IDENTITY.name}")
    except LedgerError as exc:
        return f"not yet: VACUUM FULL {IDENTITY.name} was refused ({exc}); run it as its owner"
    return "rewritten"
