"""Replacing the ledger's pseudonym key (``sharing-audit ledger rotate-key``), so that the
key which made the pseudonyms of pupils recorded before migration 0011 can be destroyed.

Those pupils' pseudonyms are HMAC-SHA256 of their UPN under the deployment's key: while
the key lasts, whoever holds it and a UPN remakes the pseudonym and finds the pupil's
leaves, erased or not. Their leaves cannot change, so their pseudonyms stay; what changes
is the key. Every identity row is sealed again under a new random key, the ledger records
the new key's fingerprint, and a ``key_rotated`` entry says who did it, when, which keys
(by fingerprint, never the key) and how many rows and pupils it concerned; all in one
transaction under the chain-head lock. The old key then makes no pseudonym the ledger
needs: nothing is sealed with it and the fingerprint check refuses it.

The caller keeps the new key (:func:`rotate_key`'s ``keep``) before the commit, so the
ledger never records a key that is nowhere on disk; destroying the old one, after the
commit, is the caller's too (beside a SQLite ledger:
:func:`pipeline.ledger.writing.keys.settle_key_file` swaps the key files, as any command starting
after a rotation that stopped there does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, bindparam, func, insert, select, update

from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage.store import ENTRY, IDENTITY, PUPIL, Ledger, NewEntry, now_text
from pipeline.ledger.writing.keys import (
    FINGERPRINT,
    META,
    SHOWN,
    bind,
    meta_value,
    remade,
    sealed_by,
)
from pipeline.logging import get_logger
from pipeline.pseudonym import Pseudonymiser, pseudonymiser

log = get_logger(__name__)

#: Identity rows sealed again at a time: a chunk's rows and MACs are held in memory.
CHUNK = 5_000


class RotationRefused(ValueError):
    """A rotation that must not be made; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Rotated:
    """A rotation as recorded: its entry, the rows sealed again, and the pupils whose
    pseudonyms the old key remade (which erasing can now make unfindable)."""

    seq: int
    resealed: int
    freed: int
    old: str
    new: str


def rotate_key(
    ledger: Ledger,
    old: Pseudonymiser,
    new_key: bytes,
    *,
    by: str,
    keep: Callable[[bytes], None],
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Rotated:
    """Seal every identity row again under ``new_key``, record its fingerprint and the
    ``key_rotated`` entry, in one transaction under the chain-head lock; ``keep`` writes
    the new key where it will be found, before the commit (if it raises, nothing changes).

    Refused (:class:`KeyRefused`) when ``old`` is not the ledger's key, and
    (:class:`RotationRefused`) when a row is not sealed by it: sealing an edited row again
    would make the edit pass ``ledger verify``."""
    if not by.strip():
        raise RotationRefused("by: say who rotates the key")
    new = pseudonymiser(new_key)
    if new.fingerprint == old.fingerprint:
        raise RotationRefused("the new key is the old one")
    with ledger.locked() as connection:
        bind(connection, old)
        total = int(connection.execute(select(func.count()).select_from(IDENTITY)).scalar_one())
        progress(0, total)
        resealed = freed = 0
        after: str | None = None
        while True:
            chunk = _chunk(connection, after)
            if not chunk:
                break
            freed += _reseal(connection, chunk, old, new)
            resealed += len(chunk)
            after = chunk[-1][0]
            progress(resealed, total)
        if meta_value(connection, FINGERPRINT) is None:  # a ledger bound to no key yet
            connection.execute(insert(META).values(name=FINGERPRINT, value=new.fingerprint))
        else:
            connection.execute(
                update(META).where(META.c.name == FINGERPRINT).values(value=new.fingerprint)
            )
        details = {
            "by": by.strip(),
            "old_key": old.fingerprint[:SHOWN],
            "new_key": new.fingerprint[:SHOWN],
            "resealed": resealed,
            "freed": freed,
        }
        seq = Ledger.head(connection)[0] + 1
        entry = Entry.act(seq, EntryKind.KEY_ROTATED, details, recorded_at=now_text())
        ledger.append(connection, [NewEntry(entry)])
        # Last before the commit: any refusal above leaves no key file behind, and the
        # ledger never records a key that is not on disk.
        keep(new_key)
    log.info("pseudonym_key_rotated", seq=seq, resealed=resealed, freed=freed)
    return Rotated(seq, resealed, freed, old.fingerprint[:SHOWN], new.fingerprint[:SHOWN])


def _chunk(connection: Connection, after: str | None) -> list[tuple[str, str, str | None, str]]:
    """The next identity rows in pseudonym order (a keyset, so each read is an index scan)."""
    rows = select(IDENTITY.c.pupil_key, IDENTITY.c.upn, IDENTITY.c.dob, IDENTITY.c.mac)
    if after is not None:
        rows = rows.where(IDENTITY.c.pupil_key > after)
    found = connection.execute(rows.order_by(IDENTITY.c.pupil_key).limit(CHUNK))
    return [(key, upn, dob, mac) for key, upn, dob, mac in found]


def _reseal(
    connection: Connection,
    chunk: list[tuple[str, str, str | None, str]],
    old: Pseudonymiser,
    new: Pseudonymiser,
) -> int:
    """Seal ``chunk`` under ``new``, each row first checked under ``old``; how many of its
    pupils ``old`` remakes. Raises :class:`RotationRefused` naming the first entry of a
    pupil whose row the old key did not seal."""
    for key, upn, dob, mac in chunk:
        if not sealed_by(old, key, upn, dob, mac):
            first = connection.execute(
                select(func.min(PUPIL.c.seq)).where(PUPIL.c.pupil_key == key)
            ).scalar()
            raise RotationRefused(
                f"the identity row of the pupil of entry {first} was changed behind the "
                "ledger's back (its MAC is not the key's): run `sharing-audit ledger verify`, "
                "restore the row, then rotate"
            )
    connection.execute(
        update(IDENTITY)
        .where(IDENTITY.c.pupil_key == bindparam("pupil"))
        .values(mac=bindparam("sealed")),
        [{"pupil": key, "sealed": new.identity_mac(key, upn, dob)} for key, upn, dob, _ in chunk],
    )
    return sum(1 for key, upn, _, _ in chunk if remade(old, key, upn))


def fingerprint_faults(connection: Connection) -> list[tuple[int, str]]:
    """(seq, what is wrong) when ``ledger_meta`` records another key than the last
    ``key_rotated`` entry made the ledger's. The row is not hashed: someone who changed it
    and sealed the identity rows again under a key of their own would pass every other
    check run with that key."""
    last = connection.execute(
        select(ENTRY.c.seq, ENTRY.c.details)
        .where(ENTRY.c.kind == EntryKind.KEY_ROTATED)
        .order_by(ENTRY.c.seq.desc())
        .limit(1)
    ).first()
    if last is None:
        return []
    try:
        made = str(orjson.loads(last.details)["new_key"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return []  # not what the ledger writes: the chain's check names the entry
    stored = meta_value(connection, FINGERPRINT) or ""
    if stored.startswith(made):
        return []
    return [
        (
            int(last.seq),
            f"ledger_meta's {FINGERPRINT} is not the key this entry made the ledger's "
            f"({made}): it was changed behind the ledger's back",
        )
    ]
