"""A small ledger with breaches to work on: the breach desk's test data."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from pipeline.api.app import create_api
from pipeline.engine import Position
from pipeline.ledger.log.witnessing import raise_refusal
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from tests.factory import (
    census,
    consent_given,
    consent_withdrawn,
    destroyed,
    left,
    line,
    referral,
    transfer,
    upn,
)

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
    with (any other key is refused: see pipeline.ledger.writing.keys)."""
    return create_api(ledger, pseudonym=pseudonymiser(KEY), **options)


def ledger_with_every_kind_of_value(url: str, policy: Policy) -> Ledger:
    """The ledger of :func:`ledger_with_breaches` and more, so that every kind of value a
    page or a report shows appears in it: every event type, every rule broken (a late
    consent withdrawal re-deciding a referral among them), every lawful basis, Art 9
    condition and channel of the contract, recipients the pack names and one it does
    not, a census, and a witness's refusal (an incident of the log's own)."""
    ledger = ledger_with_breaches(url, policy)
    writer = LedgerWriter(ledger, policy, pseudonymiser(KEY))
    consented = referral(
        pupils=[{"upn": upn(4), "dob": "2015-03-02"}],
        lawful_basis="consent",
        special_condition="9.2.a",
        consent_ref="C-4",
        categories=["personal", "medical"],
        channel="portal",
        purpose="hearing check",
    )
    events: list[Any] = [
        consent_given(upn(4), ref="C-4"),
        consented,
        consent_withdrawn(upn(4), ref="C-4"),  # late: re-decides the referral before it
        left(upn(5), left_on="2026-06-01", time="2026-06-01T15:00:00+01:00"),
        transfer(  # to another school than the one left for, and late
            pupils=[{"upn": upn(5)}],
            recipient="school:116999",
            categories=["personal", "sen"],
            special_condition="9.2.g",
        ),
        transfer(pupils=[{"upn": upn(6)}]),  # no leaving recorded
        destroyed(upn(7), categories=["medical"]),
        referral(
            pupils=[{"upn": upn(7)}],
            categories=["personal", "medical"],
            special_condition="9.2.h",
        ),
        census(
            pupils=[{"upn": upn(8)}, {"upn": upn(9)}],
            categories=["personal", "attendance", "ethnicity", "travel"],
            special_condition="9.2.g",
            oldest_record={"attendance": "2010-09-01"},
        ),
        referral(recipient="agency:unknown-helpers"),
        census(recipient="school:116512", channel="s2s"),
        referral(categories=["personal", "religion"]),
        referral(categories=["personal", "behaviour"], lawful_basis="contract"),
        referral(lawful_basis="legitimate_interests", channel="in_person"),
        referral(categories=["personal", "sen"], channel="post"),
        referral(
            recipient="la:850",
            lawful_basis="vital_interests",
            special_condition="9.2.c",
            categories=["personal", "behaviour", "medical"],
        ),
        referral(special_condition="9.2.b", categories=["medical"], lawful_basis="public_task"),
        referral(special_condition="9.2.j", categories=["sen"], channel="collect"),
        referral(pupils=[{"upn": "A123"}]),
        {**consented, "data": {**consented["data"], "channel": "in_person"}},  # its id reused
    ]
    records = [(line(e), Position.line("g", i)) for i, e in enumerate(events, 1)]
    records.append((b"{not json", Position.line("g", len(events) + 1)))
    writer.write(records)
    raise_refusal(ledger, "witness.example", 3, "HTTP 409")
    return ledger
