"""Which pseudonym key a ledger was written with, so that no other key is ever used on it.

A ledger opened with another key would answer every pupil's search and subject-access
report with nothing, and say nothing was wrong; a key generated afresh beside a ledger
already holding pupils would do the same. So the key's fingerprint is recorded the first
time the ledger is used with it, and every later use is checked against it. A ledger
written before fingerprints were recorded is checked against its own identity rows: a
row's MAC must be this key's (or, for a row written before MACs, the pseudonym of its
UPN the one stored beside it).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Table, func, insert, select

from pipeline.keyfiles import discard_key_file, key_file_for, pending_key_file, replace_key_file
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.models import LedgerMeta, holds
from pipeline.ledger.storage.store import ENTRY, IDENTITY, PUPIL, Ledger
from pipeline.logging import get_logger
from pipeline.pseudonym import (
    Pseudonymiser,
    PseudonymKeyError,
    load_or_create_key,
    pseudonymiser,
    read_key_file,
)

log = get_logger(__name__)

META: Table = LedgerMeta.__table__  # type: ignore[attr-defined]
FINGERPRINT = "pseudonym_key_fingerprint"
#: The kind of the entry recording that the ledger's pseudonym key was replaced.
#: How much of a fingerprint an entry or a message shows: enough to tell a deployment's
#: keys apart (2**64), the whole of it being in ``ledger_meta``.
SHOWN = 16


class KeyRefused(Exception):
    """The key is not the one this ledger was written with; the message says which."""


def meta_value(connection: Connection, name: str) -> str | None:
    """A named fact about the ledger (``ledger_meta``), if it is recorded."""
    found = connection.execute(select(META.c.value).where(META.c.name == name))
    return found.scalar_one_or_none()


def recorded_fingerprint(ledger: Ledger) -> str | None:
    with ledger.engine.connect() as connection:
        return meta_value(connection, FINGERPRINT)


def holds_pupils(ledger: Ledger) -> bool:
    """Whether any entry names a pupil: a ledger a new key must not be made for."""
    with ledger.engine.connect() as connection:
        return connection.execute(select(PUPIL.c.seq).limit(1)).first() is not None


def bind_key(ledger: Ledger, pseudonyms: Pseudonymiser) -> None:
    """Check ``pseudonyms`` is the ledger's key, recording its fingerprint the first time.

    Raises :class:`KeyRefused` naming both fingerprints (never the key) when it is not.
    """
    with ledger.locked() as connection:
        bind(connection, pseudonyms)


def bind(connection: Connection, pseudonyms: Pseudonymiser) -> None:
    """:func:`bind_key` in a transaction that holds the chain-head lock already."""
    mine = pseudonyms.fingerprint
    stored = meta_value(connection, FINGERPRINT)
    if stored == mine:
        return
    if stored is not None:
        raise KeyRefused(_refusal(connection, stored, mine))
    known = connection.execute(
        select(IDENTITY.c.pupil_key, IDENTITY.c.upn, IDENTITY.c.dob, IDENTITY.c.mac)
        .where(IDENTITY.c.upn != "")
        .limit(1)
    ).first()
    if known is not None and not sealed_by(pseudonyms, *known):
        raise KeyRefused(
            "this ledger's pupils were pseudonymised with another key: use the key it "
            "was written with"
        )
    connection.execute(insert(META).values(name=FINGERPRINT, value=mine))


def still_bound(connection: Connection, pseudonyms: Pseudonymiser) -> None:
    """Refuse to write with ``pseudonyms`` once the ledger records another key: a writer
    started before ``ledger rotate-key`` checks this under the chain-head lock with each
    batch, so that it never seals a row with the key the rotation retired."""
    stored = meta_value(connection, FINGERPRINT)
    if stored is not None and stored != pseudonyms.fingerprint:
        raise KeyRefused(_refusal(connection, stored, pseudonyms.fingerprint))


def _refusal(connection: Connection, stored: str, mine: str) -> str:
    """Why a key is refused, and what to do: a key ``ledger rotate-key`` retired is
    named as such (the fix is the new key, not the one the ledger was written with)."""
    retired = connection.execute(
        select(func.max(ENTRY.c.seq)).where(
            ENTRY.c.kind == EntryKind.KEY_ROTATED, holds(ENTRY.c.details, f'"{mine[:SHOWN]}"')
        )
    ).scalar()
    if retired is not None:
        return (
            f"this pseudonym key (fingerprint {mine[:SHOWN]}) was retired by `sharing-audit "
            f"ledger rotate-key` (entry {retired}): set SHARING_AUDIT_PSEUDONYM_KEY to the new "
            f"key (fingerprint {stored[:SHOWN]}) on every worker and the desk, and restart them"
        )
    return (
        f"this ledger was written with another pseudonym key (fingerprint "
        f"{stored[:SHOWN]}, this key's is {mine[:SHOWN]}): use the key it was written with"
    )


def sealed_by(
    pseudonyms: Pseudonymiser, pupil_key: str, upn: str, dob: str | None, mac: str | None
) -> bool:
    """Whether an identity row was written with this key: its MAC, or (a row written
    before MACs, whose pseudonym was then made from the UPN) its pseudonym, says so."""
    if mac is not None:
        return pseudonyms.identity_mac(pupil_key, upn, dob) == mac
    return remade(pseudonyms, pupil_key, upn)


def remade(pseudonyms: Callable[[str], str], pupil_key: str, upn: str) -> bool:
    """Whether this key remakes the pupil's pseudonym from their UPN: a pupil recorded
    before migration 0011, whom erasing their identity row would not make unfindable
    while the key lasts (``ledger rotate-key`` retires it)."""
    try:
        return bool(upn) and pseudonyms(upn) == pupil_key
    except ValueError:  # not a UPN at all: no pseudonym was ever made of it
        return False


def legacy_pupils(connection: Connection, pseudonyms: Pseudonymiser) -> int:
    """How many pupils' pseudonyms this key remakes from the UPN their identity row holds
    (see :func:`remade`): none, once ``ledger rotate-key`` has run."""
    rows = select(IDENTITY.c.pupil_key, IDENTITY.c.upn).where(IDENTITY.c.upn != "")
    found = connection.execute(rows.execution_options(yield_per=5_000))
    return sum(1 for key, upn in found if remade(pseudonyms, key, upn))


#: What :func:`settle_key_file` did with a new key file it found.
FINISHED, DISCARDED = "finished", "discarded"


def settle_key_file(ledger: Ledger, configured: str | None, database_url: str) -> str | None:
    """Finish a ``ledger rotate-key`` that stopped between its commit and the swap of its
    key files (beside a SQLite ledger), or throw away the new key of one that stopped
    before its commit: :data:`FINISHED` or :data:`DISCARDED`, or None when there was
    nothing to do. Raises :class:`PseudonymKeyError` when the files cannot be changed.

    The ledger alone says which happened: the fingerprint it records is the new key's
    once the rotation committed. Done under the chain-head lock, which a rotation holds
    from writing its new key until its commit (and again for its own swap), so a rotation
    under way is waited for, never taken for one that died."""
    path = None if configured else key_file_for(database_url)
    if path is None or not pending_key_file(path).exists():
        return None
    pending = pending_key_file(path)
    with ledger.locked() as connection:
        if not pending.exists():  # another process settled it while this one waited
            return None
        stored = meta_value(connection, FINGERPRINT)
        try:
            new: str | None = pseudonymiser(read_key_file(pending)).fingerprint
        except PseudonymKeyError:
            new = None  # written in part: the rotation cannot have committed
        try:
            if new is not None and new == stored:
                replace_key_file(path, pending)
                log.warning("key_rotation_finished", fingerprint=new[:SHOWN])
                return FINISHED
            discard_key_file(pending)
        except OSError as exc:
            raise PseudonymKeyError(
                f"cannot settle the key rotation that stopped ({pending}): {exc}"
            ) from None
        log.warning("key_rotation_discarded")
        return DISCARDED


def ledger_key(ledger: Ledger, configured: str | None, database_url: str) -> bytes:
    """The pseudonym key to use with ``ledger``: the configured one, else the one kept
    beside a SQLite ledger (made only for a ledger that holds no pupil yet), checked
    against the ledger and bound to it (when its schema is current: else the writer binds
    it before its first write). Raises :class:`PseudonymKeyError` or
    :class:`KeyRefused` saying what is wrong."""
    if not schema.is_current(ledger.engine):
        # No ledger yet (a key may be made), or one at an older schema (it may hold
        # pupils): bound when first written, once the schema is current.
        fresh = schema.current_revision(ledger.engine) is None
        return load_or_create_key(configured, database_url, may_create=fresh)
    settle_key_file(ledger, configured, database_url)
    written = recorded_fingerprint(ledger) is not None or holds_pupils(ledger)
    key = load_or_create_key(configured, database_url, may_create=not written)
    bind_key(ledger, pseudonymiser(key))
    return key
