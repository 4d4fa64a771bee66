"""Migration 0015 converts a ledger holding entries: payloads deflated, PostgreSQL's digests
kept as bytes; every reader sees what it saw before, and the chain still verifies."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import make_url, select

from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.reading.queries import Filters, entries
from pipeline.ledger.records.payloads import unpacked_payload
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.dialects import POSTGRESQL
from pipeline.ledger.storage.models import packed_digest, read_columns
from pipeline.ledger.storage.store import ENTRY, PAYLOAD, PUPIL, Ledger
from pipeline.policy.pack import Policy
from tests.integration.year import write_year

pytestmark = pytest.mark.integration

#: The tables copied into a ledger at schema 0013, each in the columns it had then.
_COPIED = {
    "ledger_entry": [c.name for c in ENTRY.columns],
    "entry_pupil": ["pupil_key", "seq"],
    "entry_recipient": ["recipient", "seq"],
    "register_fact": ["seq", "pupil_key", "fact"],
    "event_payload": ["seq", "body"],
    "pupil_identity": ["pupil_key", "upn", "dob", "mac"],
    "alert_outbox": ["seq", "severity", "body", "created_at", "relayed_at", "status"],
    "chain_head": ["id", "seq", "hash"],
}
#: Where a table that a later migration dropped takes its rows from, at head.
_DROPPED = {
    "entry_recipient": "SELECT recipient, seq FROM ledger_entry WHERE recipient <> ''",
    # Filed under pupils' numbers since 0019.
    "entry_pupil": "SELECT p.pupil_key, e.seq FROM entry_pupil e JOIN pupil p ON p.id = e.pupil",
}


def _at_0013(url: str) -> Ledger:
    ledger = Ledger.open(url)
    config = schema._config()
    with ledger.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0013")
    return ledger


def _as_at_0013(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row read raw from a SQLite ledger at head, as a ledger at 0013 held it: its
    payload as text (SQLite keeps digests as text at either schema)."""
    if table == "event_payload":
        return (row[0], unpacked_payload(row[1]))
    return row


def _year_at_0013(url: str, policy: Policy, tmp_path: Path) -> tuple[Ledger, dict[str, Any]]:
    """A ledger at schema 0013 holding a simulated year, and what readers saw of that
    year: written by today's writer into a SQLite ledger at head, its rows copied across
    as 0013 held them."""
    written = Ledger.open(f"sqlite:///{tmp_path}/written-at-head.db")
    schema.upgrade(written.engine)
    write_year(written, policy, pupils=60, seed=4)
    ledger = _at_0013(url)
    marker = ledger.dialect.marker
    with written.engine.connect() as source, ledger.engine.begin() as target:
        target.exec_driver_sql("DELETE FROM chain_head")
        for table, columns in _COPIED.items():
            named = ", ".join(f'"{c}"' for c in columns)
            query = _DROPPED.get(table, f"SELECT {named} FROM {table}")
            rows = source.exec_driver_sql(query).all()
            target.exec_driver_sql(
                f"INSERT INTO {table} ({named}) VALUES ({', '.join([marker] * len(columns))})",
                [_as_at_0013(table, tuple(row)) for row in rows],
            )
    seen = _seen(written)
    written.engine.dispose()
    return ledger, seen


def _seen(ledger: Ledger) -> dict[str, Any]:
    """What readers see: every entry, every payload's text, each pupil's entries."""
    with ledger.engine.connect() as connection:
        every = [e.as_dict() for e in entries(connection, Filters())]
        payloads = dict(connection.execute(select(PAYLOAD.c.seq, PAYLOAD.c.body)).all())
        pupils = sorted(set(connection.execute(select(PUPIL.c.pupil_key)).scalars()))[:5]
        found = {k: [e.seq for e in entries(connection, Filters(pupil_key=k))] for k in pupils}
        recipients = sorted({e["recipient"] for e in every if e["recipient"]})
        sent = {r: [e.seq for e in entries(connection, Filters(recipient=r))] for r in recipients}
    return {"entries": every, "payloads": payloads, "pupils": found, "recipients": sent}


def test_an_upgraded_ledger_shows_every_entry_payload_and_pupil_as_before(
    db_url: str, policy: Policy, tmp_path: Path
) -> None:
    ledger, before = _year_at_0013(db_url, policy, tmp_path)
    assert len(before["entries"]) > 50 and before["payloads"] and before["pupils"]
    assert len(before["recipients"]) > 2

    schema.upgrade(ledger.engine)

    assert _seen(ledger) == before
    with ledger.engine.connect() as connection:
        result = verify(connection)
    assert result.ok, result.fault


def test_an_upgraded_ledger_keeps_payloads_deflated_and_takes_more_entries(
    db_url: str, policy: Policy, tmp_path: Path
) -> None:
    ledger, _ = _year_at_0013(db_url, policy, tmp_path)
    schema.upgrade(ledger.engine)
    with ledger.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT body FROM event_payload").scalars().all()
        recorded = len(connection.exec_driver_sql("SELECT seq FROM ledger_entry").all())
    assert stored and all(isinstance(body, bytes) for body in stored)

    write_year(ledger, policy, pupils=40, seed=5)

    with ledger.engine.connect() as connection:
        result = verify(connection)
    assert result.ok and result.count > recorded, result.fault


def test_an_upgraded_postgresql_ledger_keeps_each_digest_in_32_bytes(
    pg_url: str, policy: Policy, tmp_path: Path
) -> None:
    ledger, _ = _year_at_0013(pg_url, policy, tmp_path)
    schema.upgrade(ledger.engine)
    with ledger.engine.connect() as connection:
        stored = connection.exec_driver_sql(
            "SELECT octet_length(hash), octet_length(prev_hash) FROM ledger_entry"
        ).all()
        keys = connection.exec_driver_sql("SELECT octet_length(pupil_key) FROM pupil")
        assert {n for row in stored for n in row} == {32}
        assert set(keys.scalars()) == {32}


@pytest.mark.parametrize(
    "written",
    ["v1", "a" * 31, "b" * 32, "é" * 15 + "x", "", "<policy_version>", "AB" * 32, "ab" * 32],
)
def test_the_upgrades_sql_packs_a_text_as_the_writer_does(pg_url: str, written: str) -> None:
    """Rows written before 0015 are packed by SQL, rows after by Python: the same bytes,
    which SQL reads back as the text written."""
    upgrade = importlib.import_module(
        "pipeline.ledger.storage.migrations.versions.0015_storage_per_entry"
    )
    engine = Ledger.open(pg_url).engine
    with engine.connect() as connection:
        packed = connection.exec_driver_sql(
            f"SELECT {upgrade._packed('v')} FROM (SELECT %s::text AS v) s", (written,)
        ).scalar_one()
        # ... and verify's reads, which bypass the column's type, read the text back.
        read = connection.exec_driver_sql(
            f"SELECT {read_columns(ENTRY, ['hash'], POSTGRESQL)} FROM (SELECT %s AS hash) s",
            (packed,),
        ).scalar_one()
    engine.dispose()
    assert bytes(packed) == packed_digest(written)
    assert read == written


def test_a_database_reading_backslashes_as_escapes_is_built_read_and_verified(
    pg_url: str, policy: Policy
) -> None:
    """With ``standard_conforming_strings = off`` (an old server's default, or a
    setting a DBA keeps) PostgreSQL takes ``'\\xff'`` for an escape: the migrations and
    verify's reads spell their bytes without one."""
    off = {"options": "-c standard_conforming_strings=off"}
    ledger = Ledger.open(make_url(pg_url).update_query_dict(off).render_as_string(False))
    with ledger.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW standard_conforming_strings").scalar() == "off"
    schema.upgrade(ledger.engine)
    write_year(ledger, policy, pupils=10, seed=3)
    with ledger.engine.connect() as connection:
        result = verify(connection)
    assert result.ok and result.count > 20, result.fault
