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

from sqlalchemy import Connection, Table, insert, select

from pipeline.ledger import schema
from pipeline.ledger.models import LedgerMeta
from pipeline.ledger.store import IDENTITY, PUPIL, Ledger
from pipeline.pseudonym import Pseudonymiser, load_or_create_key, pseudonymiser

META: Table = LedgerMeta.__table__  # type: ignore[attr-defined]
FINGERPRINT = "pseudonym_key_fingerprint"


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
    mine = pseudonyms.fingerprint
    with ledger.locked() as connection:
        stored = meta_value(connection, FINGERPRINT)
        if stored == mine:
            return
        if stored is not None:
            raise KeyRefused(
                f"this ledger was written with another pseudonym key (fingerprint "
                f"{stored[:16]}, this key's is {mine[:16]}): use the key it was written with"
            )
        known = connection.execute(
            select(IDENTITY.c.pupil_key, IDENTITY.c.upn, IDENTITY.c.dob, IDENTITY.c.mac)
            .where(IDENTITY.c.upn != "")
            .limit(1)
        ).first()
        if known is not None and not _sealed_by(pseudonyms, *known):
            raise KeyRefused(
                "this ledger's pupils were pseudonymised with another key: use the key it "
                "was written with"
            )
        connection.execute(insert(META).values(name=FINGERPRINT, value=mine))


def _sealed_by(
    pseudonyms: Pseudonymiser, pupil_key: str, upn: str, dob: str | None, mac: str | None
) -> bool:
    """Whether an identity row was written with this key: its MAC, or (a row written
    before MACs, whose pseudonym was then made from the UPN) its pseudonym, says so."""
    if mac is not None:
        return pseudonyms.identity_mac(pupil_key, upn, dob) == mac
    return pseudonyms(upn) == pupil_key


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
    written = recorded_fingerprint(ledger) is not None or holds_pupils(ledger)
    key = load_or_create_key(configured, database_url, may_create=not written)
    bind_key(ledger, pseudonymiser(key))
    return key
