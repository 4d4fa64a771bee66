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

from sqlalchemy import Connection, select

from pipeline.ledger.storage.store import IDENTITY, Ledger, any_of
from pipeline.register import check_upn

#: The pseudonym a UPN the ledger does not know is looked up by: it names no pupil (a
#: drawn one is never all zeros but once in 2**256), so the answer is "nothing recorded".
NOBODY = "0" * 64


def drawn() -> str:
    """A new pupil's pseudonym: 32 random bytes, in the shape of every pseudonym."""
    return secrets.token_hex(32)


def pseudonyms_of(connection: Connection, upns: Iterable[str]) -> dict[str, str]:
    """The pseudonym of each of these (normalised) UPNs the ledger holds an identity for."""
    wanted = [upn for upn in dict.fromkeys(upns) if upn]
    if not wanted:
        return {}
    rows = connection.execute(
        select(IDENTITY.c.upn, IDENTITY.c.pupil_key).where(
            IDENTITY.c.upn != "",  # the unique index covers these rows alone
            any_of(connection, IDENTITY.c.upn, wanted),
        )
    )
    return {upn: key for upn, key in rows}


def resolved(connection: Connection, upns: Iterable[str]) -> dict[str, str]:
    """Every UPN's pseudonym: its identity row's, else one drawn now (the writer gives
    each pupil an entry names their row). Call it holding the chain-head lock."""
    wanted = list(dict.fromkeys(upns))
    found = pseudonyms_of(connection, wanted)
    return {upn: found.get(upn) or drawn() for upn in wanted}


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
