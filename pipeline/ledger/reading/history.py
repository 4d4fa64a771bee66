"""The recorded sharing events of a period, as a replay needs them: each with its
pseudonymised payload and its current decision, and the register's facts and the pupils'
dates of birth to decide them by.

Read only, pinned to a head (``up_to_seq``): what a replay is compared with is what the
ledger said at that head. No plain UPN is read: a replay names pupils by pseudonym, and
only a date of birth (a retention rule may count from it) is taken from the identity
rows. A pupil with no identity row has been erased.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, select

from pipeline.ledger.reading.queries import in_period
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.store import ENTRY, FACT, IDENTITY, PAYLOAD, any_of
from pipeline.ledger.writing.ingest import fact_from_json
from pipeline.register import SchoolFact
from schemas.decisions import Decision
from schemas.events import SHARING_TYPES

#: Rows fetched at a time from a period's events.
_PAGE = 2_000


class Recorded(NamedTuple):
    """One recorded sharing event: its entry's seq, what the entry says of it, its pupils'
    pseudonyms, its current decision, and its payload (None when the ledger kept none: a
    rejected event's)."""

    seq: int
    event: dict[str, Any]
    pupils: tuple[str, ...]
    current: Decision
    payload: dict[str, Any] | None


def _decision(decision: str | None, rules: str, reasons: str) -> Decision:
    return Decision.model_validate(
        {"decision": decision, "rules": orjson.loads(rules), "reasons": orjson.loads(reasons)}
    )


def latest_reevaluations(connection: Connection, up_to_seq: int) -> dict[int, Decision]:
    """Each re-decided entry's current decision (its latest re-evaluation), by seq."""
    rows = connection.execute(
        select(ENTRY.c.refers_to, ENTRY.c.decision, ENTRY.c.rules, ENTRY.c.reasons)
        .where(
            ENTRY.c.refers_to.is_not(None),
            ENTRY.c.kind == EntryKind.REEVALUATION,
            ENTRY.c.seq <= up_to_seq,
        )
        .order_by(ENTRY.c.seq)
    )
    latest: dict[int, tuple[str | None, str, str]] = {}
    for refers_to, decision, rules, reasons in rows:
        latest[refers_to] = (decision, rules, reasons)
    return {seq: _decision(*said) for seq, said in latest.items()}


def recorded_events(
    connection: Connection,
    since: str | None,
    until: str | None,
    up_to_seq: int,
    schools: tuple[str, ...] | None = None,
) -> Iterator[Recorded]:
    """The sharing events that occurred in [since, until) (of ``schools`` alone, when
    given), each once (an arrival reusing an id is no event of its own), in seq order,
    at its current decision."""
    current = latest_reevaluations(connection, up_to_seq)
    columns = (
        ENTRY.c.seq,
        ENTRY.c.event_id,
        ENTRY.c.event_type,
        ENTRY.c.occurred_at,
        ENTRY.c.school,
        ENTRY.c.recipient,
        ENTRY.c.pupil_keys,
        ENTRY.c.decision,
        ENTRY.c.rules,
        ENTRY.c.reasons,
        PAYLOAD.c.body,
    )
    statement = (
        select(*columns)
        .outerjoin(PAYLOAD, PAYLOAD.c.seq == ENTRY.c.seq)
        .where(
            ENTRY.c.kind == EntryKind.DECISION,
            ENTRY.c.refers_to.is_(None),
            ENTRY.c.event_type.in_(SHARING_TYPES),
            ENTRY.c.seq <= up_to_seq,
        )
        .order_by(ENTRY.c.seq)
    )
    statement = in_period(statement, since, until, schools)
    rows = connection.execute(statement.execution_options(stream_results=True, yield_per=_PAGE))
    for (
        seq,
        event_id,
        event_type,
        at,
        school,
        recipient,
        keys,
        decision,
        rules,
        reasons,
        body,
    ) in rows:
        pupils = tuple(orjson.loads(keys))
        yield Recorded(
            seq,
            {
                "event_id": event_id,
                "event_type": event_type,
                "occurred_at": at,
                "school": school,
                "recipient": recipient,
                "pupils": list(pupils),
            },
            pupils,
            current.get(seq) or _decision(decision, rules, reasons),
            orjson.loads(body) if body is not None else None,
        )


def school_facts(
    connection: Connection, up_to_seq: int, schools: tuple[str, ...] | None = None
) -> list[SchoolFact]:
    """The register's facts recorded up to ``up_to_seq`` (of ``schools`` alone, when
    given), each with the school that recorded it: a replay asks them as of each event's
    time, as the writer did."""
    statement = (
        select(ENTRY.c.school, FACT.c.fact)
        .join(ENTRY, ENTRY.c.seq == FACT.c.seq)
        .where(FACT.c.seq <= up_to_seq)
    )
    if schools is not None:
        statement = statement.where(ENTRY.c.school.in_(schools or ("",)))
    return [
        SchoolFact(school, *fact_from_json(orjson.loads(fact)))
        for school, fact in connection.execute(statement)
    ]


def births(connection: Connection, pupil_keys: Iterable[str]) -> dict[str, str | None]:
    """Each pupil's date of birth (ISO, or None when never given), by pseudonym; a pupil
    who has been erased is not among them. No UPN is read."""
    keys = list(dict.fromkeys(pupil_keys))
    found: dict[str, str | None] = {}
    for start in range(0, len(keys), 5_000):
        rows = connection.execute(
            select(IDENTITY.c.pupil_key, IDENTITY.c.dob).where(
                any_of(connection, IDENTITY.c.pupil_key, keys[start : start + 5_000])
            )
        )
        found.update({key: dob for key, dob in rows})
    return found
