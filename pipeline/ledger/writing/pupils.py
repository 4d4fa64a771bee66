"""Which pseudonym names a pupil: the one their identity row holds, or, for a pupil the
ledger has never named, one drawn at random.

A pseudonym made from the UPN under a key (an HMAC) can be made again by whoever holds
the key and the UPN, and then finds the pupil's leaves in any mirror of the log, erased
or not. A random one is tied to the UPN only by the identity row, which erasing the
pupil deletes (:mod:`pipeline.ledger.privacy.erasure`); after that no key and no UPN lead to it.

The writer resolves a batch's UPNs while it holds the chain-head lock, so two workers
never draw two pseudonyms for one pupil; the unique index on the row's UPN (migration
0011) refuses a second row should anything else try. Pupils recorded before keep the
pseudonyms they were given (their leaves cannot change): their rows find them the same way.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import NamedTuple

from sqlalchemy import Connection, select

from pipeline.ledger.storage.store import IDENTITY, Ledger, any_of
from pipeline.register import check_upn

#: The pseudonym a UPN the ledger does not know is looked up by: it names no pupil (a
#: drawn one is never all zeros but once in 2**256), so the answer is "nothing recorded".
NOBODY = "0" * 64


def drawn() -> str:
    """A new pupil's pseudonym: 32 random bytes, in the shape of every pseudonym."""
    return secrets.token_hex(32)


class Identity(NamedTuple):
    """A pupil's pseudonym and the date of birth their identity row holds; ``stored``:
    whether the ledger holds that row (False: a pupil new to it, named just now)."""

    key: str
    dob: str | None = None
    stored: bool = True


def identities_held(connection: Connection, upns: Iterable[str]) -> dict[str, Identity]:
    """The identity row of each of these (normalised) UPNs the ledger holds one for."""
    wanted = [upn for upn in dict.fromkeys(upns) if upn]
    if not wanted:
        return {}
    rows = connection.execute(
        select(IDENTITY.c.upn, IDENTITY.c.pupil_key, IDENTITY.c.dob).where(
            IDENTITY.c.upn != "",  # the unique index covers these rows alone
            any_of(connection, IDENTITY.c.upn, wanted),
        )
    )
    return {upn: Identity(key, dob) for upn, key, dob in rows}


def pseudonyms_of(connection: Connection, upns: Iterable[str]) -> dict[str, str]:
    """The pseudonym of each of these (normalised) UPNs the ledger holds an identity for."""
    return {upn: held.key for upn, held in identities_held(connection, upns).items()}


def resolved(connection: Connection, upns: Iterable[str]) -> dict[str, Identity]:
    """Every UPN's identity: its row's, else a pseudonym drawn now and not yet stored (the
    writer stores it with the entry that names the pupil). Call it holding the chain-head
    lock."""
    wanted = list(dict.fromkeys(upns))
    found = identities_held(connection, wanted)
    return {upn: found.get(upn) or Identity(drawn(), stored=False) for upn in wanted}


def identity_written(identity: Identity, dob: str | None) -> bool:
    """Whether an event naming a pupil with this identity and bringing this date of birth
    writes their row: a new pupil's, or a date of birth the row lacks or differs from.
    Most events name pupils the ledger knows and bring nothing new: their rows are neither
    written nor, on PostgreSQL, locked (an upsert that changes nothing still locks and
    logs each row it meets)."""
    return not identity.stored or (dob is not None and dob != identity.dob)


def finder(ledger: Ledger) -> Callable[[str], str]:
    """A UPN to the pseudonym a reader asks the ledger about: its pupil's, or
    :data:`NOBODY` for a UPN the ledger holds no identity for (never recorded, or
    erased). ``upn`` must be a valid UPN: callers check it first."""

    def pseudonym(upn: str) -> str:
        normal = check_upn(upn)[0]
        if normal is None:
            return NOBODY
        with ledger.engine.connect() as connection:
            return pseudonyms_of(connection, [normal]).get(normal, NOBODY)

    return pseudonym
