"""Checking the rows beside the chain against what the chain says of them.

A register fact changes later decisions; an event payload is what a late fact re-decides;
an alert is what the desk builds its incidents from; an identity row is what a
subject-access report shows. None of them is a hashed row, so
each is bound to the chain another way: a fact's and a payload's SHA-256 is in its
entry's hashed ``details.sides``, and an identity row carries a MAC under the pseudonym
key (it must stay erasable, so nothing hashed may depend on it). Each check names the
first entry whose side row was changed, removed or inserted behind the writer's back.
"""

from __future__ import annotations

import zlib

import orjson
from sqlalchemy import Connection, LargeBinary, case, func, select, type_coerce

from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.records.payloads import oldest_record_of, unpacked_payload
from pipeline.ledger.storage.models import holds
from pipeline.ledger.storage.store import ENTRY, FACT, IDENTITY, OUTBOX, PAYLOAD, PUPIL, side_digest
from pipeline.ledger.writing.keys import meta_value
from pipeline.ledger.writing.outbox import SUPERSEDED
from pipeline.pseudonym import Pseudonymiser

BOUND_FROM = "side_rows_bound_from"
_PAGE = 5_000


#: Entries checked at a time: the digests of a window are held in memory, never a year's.
WINDOW = 50_000
_SIDES = (
    # As stored: a payload changed into bytes that no longer inflate is named, not raised.
    ("payload", PAYLOAD, type_coerce(PAYLOAD.c.body, LargeBinary)),
    ("fact", FACT, FACT.c.fact),
    ("alert", OUTBOX, OUTBOX.c.body),
)


def _vouched(connection: Connection, start: int, end: int) -> dict[int, dict[str, str]]:
    """seq to the side digests its hashed details hold, for the entries in [start, end)."""
    statement = select(ENTRY.c.seq, ENTRY.c.details).where(
        ENTRY.c.seq >= start, ENTRY.c.seq < end, holds(ENTRY.c.details, '"sides"')
    )
    rows = connection.execute(statement.execution_options(yield_per=_PAGE))
    return {seq: _sides_of(details) for seq, details in rows}


def _sides_of(details: str) -> dict[str, str]:
    """The side digests in an entry's details; none from details that are not what the
    ledger writes (the chain's check names that entry, whichever check runs first)."""
    try:
        sides = orjson.loads(details).get("sides", {})
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return sides if isinstance(sides, dict) else {}


def side_faults(connection: Connection) -> list[tuple[int, str]]:
    """(seq, what is wrong) for each fact, payload or alert that its entry does not vouch
    for, and each alert kept off the desk that nothing re-decided."""
    since, moved = _bound(connection)
    # Up to the highest seq of any table: a side row may claim an entry that is not there.
    top = max(
        connection.execute(select(func.max(t.c.seq))).scalar() or 0
        for t in (ENTRY, PAYLOAD, FACT, OUTBOX)
    )
    faults: list[tuple[int, str]] = []
    for start in range(since, top + 1, WINDOW):
        faults += _window_faults(connection, start, start + WINDOW)
    return sorted(moved + faults + _unfounded_supersessions(connection, since))


def _bound(connection: Connection) -> tuple[int, list[tuple[int, str]]]:
    """The first seq whose side rows are checked, and a fault if ``ledger_meta`` says a
    later one than the first entry vouching for a side row: the row is neither hashed nor
    guarded by a trigger, and moved past the chain's end it would switch these checks off."""
    bound = meta_value(connection, BOUND_FROM)
    since = int(bound) if bound is not None and bound.isdigit() else 1
    # The first entry whose details hold "sides" as text: the search may also find it
    # among a digest's bytes (see holds), so what it finds is read again.
    vouching = select(ENTRY.c.seq, ENTRY.c.details).where(holds(ENTRY.c.details, '"sides"'))
    vouching = vouching.order_by(ENTRY.c.seq).execution_options(yield_per=64)
    with connection.execute(vouching) as found:
        first = next((seq for seq, details in found if '"sides"' in details), None)
    if first is None or first >= since:
        return since, []
    fault = (
        f"ledger_meta's {BOUND_FROM} says {bound!r}, but this entry already vouches for "
        "its side rows (the bound was moved to switch their checks off)"
    )
    return int(first), [(int(first), fault)]


def _window_faults(connection: Connection, start: int, end: int) -> list[tuple[int, str]]:
    vouched = _vouched(connection, start, end)
    faults: list[tuple[int, str]] = []
    for kind, table, column in _SIDES:
        found: set[int] = set()
        # A payload's oldest records are also kept beside it, for the database to read:
        # a copy of the payload's own, never a second truth.
        kept = [PAYLOAD.c.oldest_record] if table is PAYLOAD else []
        rows = select(table.c.seq, column, *kept).where(table.c.seq >= start, table.c.seq < end)
        for seq, stored, *copy in connection.execute(rows.execution_options(yield_per=_PAGE)):
            found.add(seq)
            text = _payload_text(stored) if table is PAYLOAD else stored
            expected = vouched.get(seq, {}).get(kind)
            if expected is None:
                faults.append((seq, f"a {_named(kind)} was inserted: the entry vouches for none"))
            elif text is None or side_digest(text) != expected:
                faults.append((seq, f"its {_named(kind)} was changed"))
            elif copy and copy[0] != oldest_record_of(text):
                faults.append((seq, "the copy of its payload's oldest records was changed"))
        for seq, sides in vouched.items():
            if kind in sides and seq not in found:
                faults.append((seq, f"its {_named(kind)} was removed"))
    return faults


def _payload_text(stored: bytes) -> str | None:
    """The payload's text, or None where its stored bytes are not a payload's."""
    try:
        return unpacked_payload(stored)
    except (ValueError, zlib.error):  # UnicodeDecodeError is a ValueError
        return None


def _unfounded_supersessions(connection: Connection, since: int) -> list[tuple[int, str]]:
    """An alert is marked superseded (kept off the desk) only when a later entry re-decided
    its event; one marked so without such an entry was hidden behind the writer's back."""
    alerted = ENTRY.alias("alerted")
    base = case(
        (alerted.c.kind == EntryKind.REEVALUATION, alerted.c.refers_to), else_=alerted.c.seq
    )
    redecided = select(ENTRY.c.seq).where(
        ENTRY.c.kind == EntryKind.REEVALUATION,
        ENTRY.c.refers_to == base,
        ENTRY.c.seq > alerted.c.seq,
    )
    statement = (
        select(OUTBOX.c.seq)
        .join(alerted, alerted.c.seq == OUTBOX.c.seq)
        .where(OUTBOX.c.status == SUPERSEDED, OUTBOX.c.seq >= since, ~redecided.exists())
    )
    fault = "its alert was marked superseded, but nothing re-decided it"
    return [(seq, fault) for seq in connection.execute(statement).scalars()]


def _named(kind: str) -> str:
    return {"fact": "register fact", "payload": "event payload", "alert": "alert"}[kind]


def identity_faults(connection: Connection, pseudonyms: Pseudonymiser) -> list[tuple[int, str]]:
    """(first entry naming the pupil, what is wrong) for each identity row that does not
    hold what the writer wrote: a MAC that does not match, or (a row written before MACs)
    a UPN whose pseudonym is not the row's."""
    faults: list[tuple[str, str]] = []
    rows = select(IDENTITY.c.pupil_key, IDENTITY.c.upn, IDENTITY.c.dob, IDENTITY.c.mac)
    for key, upn, dob, mac in connection.execute(rows.execution_options(yield_per=_PAGE)):
        if mac is not None:
            if pseudonyms.identity_mac(key, upn, dob) != mac:
                faults.append((key, "its pupil's identity row (UPN or date of birth) was changed"))
        elif upn and _pseudonym_of(pseudonyms, upn) != key:
            faults.append((key, "its pupil's identity row names another UPN"))
    named: list[tuple[int, str]] = []
    for key, fault in faults:
        first = connection.execute(
            select(PUPIL.c.seq).where(PUPIL.c.pupil_key == key).order_by(PUPIL.c.seq).limit(1)
        ).scalar()
        named.append((int(first) if first is not None else 0, fault))
    return sorted(named)


def _pseudonym_of(pseudonyms: Pseudonymiser, upn: str) -> str | None:
    try:
        return pseudonyms(upn)
    except ValueError:  # not a UPN at all: no pseudonym could have been made of it
        return None
