"""Retention due, read from the ledger: what each school holds of each pupil, the
register's facts and dates of birth, handed to the pure computation
(:func:`pipeline.policy.retention.retention_due`).

What a school holds is read from its decided sharing events (never a rejected one, which
may not even name its pupils rightly), grouped in the database by school, pupil, category
list and declared oldest records, so a pupil's many censuses of the same categories come
back as one row. The declared ``oldest_record`` is read out of the stored payload by the
database's own JSON functions; a payload that cannot be read (an erased pupil's, say)
leaves the record dated from its first sharing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, cast, func, select

from pipeline.ledger.ingest import fact_from_json
from pipeline.ledger.store import ENTRY, FACT, IDENTITY, PAYLOAD, PUPIL, from_utc_text
from pipeline.policy.pack import Policy
from pipeline.policy.retention import Due, Held, merged, retention_due
from pipeline.register import Register, SchoolFact
from pipeline.schooltime import school_day
from schemas.events import SHARING_TYPES


@dataclass(frozen=True, slots=True)
class DueList:
    """What is due on a day, with each listed pupil's UPN for the school to act on."""

    as_of: date
    items: list[Due]
    upns: dict[str, str]

    @property
    def pupil_keys(self) -> list[str]:
        return list(dict.fromkeys(item.pupil for item in self.items))


def _oldest_record(connection: Connection) -> Any:
    """The payload's ``data.oldest_record`` as JSON text (NULL where absent)."""
    if connection.dialect.name == "sqlite":
        return func.json_extract(PAYLOAD.c.body, "$.data.oldest_record")
    return func.json_extract_path_text(cast(PAYLOAD.c.body, JSON), "data", "oldest_record")


def _scoped(statement: Any, column: Any, schools: tuple[str, ...] | None) -> Any:
    return statement if schools is None else statement.where(column.in_(schools))


def held_in(connection: Connection, schools: tuple[str, ...] | None = None) -> list[Held]:
    """Every category each school holds of each pupil, with its first sharing day and the
    oldest record of it any sharing declared."""
    oldest = _oldest_record(connection).label("oldest")
    statement = (
        select(
            ENTRY.c.school,
            PUPIL.c.pupil_key,
            ENTRY.c.categories,
            oldest,
            func.min(ENTRY.c.occurred_at).label("first"),
        )
        .join(PUPIL, PUPIL.c.seq == ENTRY.c.seq)
        .outerjoin(PAYLOAD, PAYLOAD.c.seq == ENTRY.c.seq)
        .where(
            ENTRY.c.kind == "decision",
            ENTRY.c.refers_to.is_(None),
            ENTRY.c.event_type.in_(SHARING_TYPES),
            ENTRY.c.decision != "rejected",
        )
        .group_by(ENTRY.c.school, PUPIL.c.pupil_key, ENTRY.c.categories, oldest)
    )
    held: list[Held] = []
    for school, pupil, categories, declared, first in connection.execute(
        _scoped(statement, ENTRY.c.school, schools)
    ):
        shared_on = school_day(from_utc_text(first))
        records = _declared(declared)
        for category in orjson.loads(categories):
            held.append(Held(school, pupil, category, shared_on, records.get(category)))
    return merged(held)


def _declared(text: str | None) -> dict[str, date]:
    """The declared oldest record of each category; nothing from what cannot be read."""
    if not text:
        return {}
    try:
        found = orjson.loads(text)
        return {category: date.fromisoformat(day) for category, day in found.items()}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return {}


def register_in(connection: Connection, schools: tuple[str, ...] | None = None) -> Register:
    """The register's facts of the schools (every school's when None), by pupil key."""
    statement = select(ENTRY.c.school, FACT.c.fact).join(ENTRY, ENTRY.c.seq == FACT.c.seq)
    register = Register(pupil_key=lambda key: key)
    for school, text in connection.execute(_scoped(statement, ENTRY.c.school, schools)):
        register.add_keyed(SchoolFact(school, *fact_from_json(orjson.loads(text))))
    return register


def identities_in(connection: Connection) -> tuple[dict[str, date | None], dict[str, str]]:
    """Each known pupil's date of birth (None when never given) and UPN, by key."""
    dobs: dict[str, date | None] = {}
    upns: dict[str, str] = {}
    for key, upn, dob in connection.execute(
        select(IDENTITY.c.pupil_key, IDENTITY.c.upn, IDENTITY.c.dob)
    ):
        dobs[key] = date.fromisoformat(dob) if dob else None
        upns[key] = upn
    return dobs, upns


def due_in(
    connection: Connection,
    policy_for: Callable[[str], Policy],
    as_of: date,
    schools: tuple[str, ...] | None = None,
) -> DueList:
    """What the schools (every school when None) must destroy by ``as_of``."""
    held = held_in(connection, schools)
    register = register_in(connection, schools)
    dobs, upns = identities_in(connection)
    items = retention_due(held, register, dobs, policy_for, as_of)
    listed = {item.pupil for item in items}
    return DueList(as_of, items, {k: u for k, u in upns.items() if k in listed})


#: The columns of a due list written out (CSV, JSON Lines): dates in ISO form.
DUE_COLUMNS = ("school", "upn", "category", "kept_until", "due_since", "counted_from", "period")


def due_rows(due: DueList) -> list[tuple[str, str, str, str, str, str, str]]:
    """The due list's rows under :data:`DUE_COLUMNS`."""
    return [
        (
            item.school,
            due.upns.get(item.pupil, ""),
            item.category,
            item.kept_until.isoformat(),
            item.due_on.isoformat(),
            item.counted_from,
            item.period,
        )
        for item in due.items
    ]
