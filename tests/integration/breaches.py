"""A small ledger with breaches to work on: the breach desk's test data."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from pipeline.api.app import create_api
from pipeline.engine import Position
from pipeline.ledger import schema
from pipeline.ledger.ingest import LedgerWriter
from pipeline.ledger.store import Ledger
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from tests.factory import line, referral, upn

KEY = bytes(range(32))
#: Each pupil's date of birth, as the events give it.
BORN = {1: "2014-03-09", 2: "2014-11-23", 3: "2015-06-02"}


def ledger_with_breaches(url: str, policy: Policy) -> Ledger:
    """Two consent breaches (medical notes, no consent) to one agency on one day: one
    high-severity incident (pupils 1 and 2); and a referral by plain email: another
    (pupil 3). Each pupil's date of birth is :data:`BORN`'s."""
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    writer = LedgerWriter(ledger, policy, pseudonymiser(KEY))
    events = [
        referral(
            pupils=[{"upn": upn(n), "dob": BORN[n]}],
            lawful_basis="consent",
            special_condition="9.2.a",
            consent_ref=f"C-{n}",
            categories=["personal", "medical"],
        )
        for n in (1, 2)
    ]
    events.append(
        referral(
            pupils=[{"upn": upn(3), "dob": BORN[3]}],
            channel="email",
            categories=["personal", "medical"],
            lawful_basis="public_task",
            special_condition="9.2.h",
        )
    )
    writer.write([(line(e), Position.line("f", i)) for i, e in enumerate(events, 1)])
    return ledger


def breach_desk(ledger: Ledger, **options: Any) -> FastAPI:
    """The app over a ledger of :func:`ledger_with_breaches`, on the key it was written
    with (any other key is refused: see pipeline.ledger.keys)."""
    return create_api(ledger, pseudonym=pseudonymiser(KEY), **options)
