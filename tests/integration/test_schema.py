"""Preparing a ledger's schema: create it in an empty database, never change an old one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command

from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.records.payloads import unpacked_payload
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.errors import LedgerError
from pipeline.ledger.storage.models import APPEND_ONLY_TABLES
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import STORED_LEAVES, leaf_bytes, root_at, tree_size
from pipeline.policy.pack import Policy
from pipeline.transparency.merkle import tree_root
from tests.integration.year import write_year

pytestmark = pytest.mark.integration


def test_an_empty_database_is_given_the_schema(sqlite_url: str) -> None:
    ledger = Ledger.open(sqlite_url)
    schema.prepare(ledger.engine)
    assert schema.is_current(ledger.engine)


def test_an_empty_database_is_refused_when_it_may_not_be_created(sqlite_url: str) -> None:
    with pytest.raises(schema.SchemaNotReady, match="holds no ledger yet"):
        schema.prepare(Ledger.open(sqlite_url).engine, create=False)


def test_an_older_schema_is_refused_and_left_as_it_is(sqlite_url: str) -> None:
    ledger = Ledger.open(sqlite_url)
    config = schema._config()
    with ledger.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with pytest.raises(schema.SchemaNotReady, match="at schema 0001: run sharing-audit db upgrade"):
        schema.prepare(ledger.engine)
    assert schema.current_revision(ledger.engine) == "0001"


def _at_revision(url: str, revision: str) -> Ledger:
    ledger = Ledger.open(url)
    config = schema._config()
    with ledger.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return ledger


def _sqlite_schema(ledger: Ledger) -> dict[str, str | None]:
    with ledger.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT name, sql FROM sqlite_master").all()
    return {name: sql for name, sql in rows}


#: A table of schema 0005 that a later migration dropped (0018: an index replaced it).
DROPPED = "entry_recipient"
#: The tables a ledger at schema 0005 has, and an upgrade must keep row for row.
_KEPT = (
    "ledger_entry",
    "entry_pupil",
    "register_fact",
    "event_payload",
    "pupil_identity",
    "alert_outbox",
    "chain_head",
)


#: The pupil index as schema 0005 held it (pseudonym, seq), read from a ledger at head,
#: whose index files entries under pupils' numbers (migration 0019).
_PUPIL_INDEX_AT_HEAD = (
    "SELECT p.pupil_key, e.seq FROM {db}entry_pupil e JOIN {db}pupil p ON p.id = e.pupil"
)


def _columns(ledger: Ledger, table: str) -> list[str]:
    with ledger.engine.connect() as connection:
        return [row[1] for row in connection.exec_driver_sql(f"PRAGMA table_info({table})")]


def _contents(ledger: Ledger, columns: dict[str, list[str]]) -> dict[str, list[Any]]:
    """The rows of the ledger's tables, in the columns given for each; payloads as their
    text, whether kept as text (before migration 0015) or deflated."""
    with ledger.engine.connect() as connection:
        at_head = "pupil" in _sqlite_schema(ledger)
        return {
            table: sorted(
                tuple(_as_text(v) for v in row)
                for row in connection.exec_driver_sql(
                    _PUPIL_INDEX_AT_HEAD.format(db="")
                    if at_head and table == "entry_pupil"
                    else f"SELECT {', '.join(columns[table])} FROM {table}"
                )
            )
            for table in _KEPT
        }


def _as_text(value: Any) -> Any:
    return unpacked_payload(value) if isinstance(value, bytes) else value


def _year_at_0005(url: str, policy: Policy, tmp_path: Path) -> tuple[Ledger, dict[str, list[str]]]:
    """A ledger at schema 0005 holding a simulated year, and the columns it has. Today's
    writer needs today's schema, so the year is written into a ledger at head and its
    rows copied into the older one, column for column."""
    ledger = _at_revision(url, "0005")
    columns = {table: _columns(ledger, table) for table in _KEPT}
    written = Ledger.open(f"sqlite:///{tmp_path}/written-at-head.db")
    schema.upgrade(written.engine)
    write_year(written, policy, pupils=100, seed=1)
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql(f"ATTACH DATABASE '{tmp_path}/written-at-head.db' AS head")
        connection.exec_driver_sql("DELETE FROM main.chain_head")
        for table in _KEPT:
            named = ", ".join(f'"{c}"' for c in columns[table])
            if table == "event_payload":  # as text, as schema 0005 kept it
                rows = connection.exec_driver_sql(f"SELECT {named} FROM head.{table}").all()
                connection.exec_driver_sql(
                    f"INSERT INTO main.{table} ({named}) VALUES (?, ?)",
                    [(seq, unpacked_payload(body)) for seq, body in rows],
                )
                continue
            source = (
                _PUPIL_INDEX_AT_HEAD.format(db="head.")
                if table == "entry_pupil"
                else f"SELECT {named} FROM head.{table}"
            )
            connection.exec_driver_sql(f"INSERT INTO main.{table} ({named}) {source}")
    with ledger.engine.connect() as connection:
        connection.exec_driver_sql("DETACH DATABASE head")
    return ledger, columns


def test_upgrading_a_sqlite_ledger_keeps_every_row_index_and_trigger(
    sqlite_url: str, policy: Policy, tmp_path: Path
) -> None:
    ledger, columns = _year_at_0005(sqlite_url, policy, tmp_path)
    before, kept = _contents(ledger, columns), _sqlite_schema(ledger)
    assert len(before["ledger_entry"]) > 50 and before["alert_outbox"]

    schema.upgrade(ledger.engine)

    assert _contents(ledger, columns) == before
    after = _sqlite_schema(ledger)
    dependents = {
        n: s
        for n, s in kept.items()
        if s and not s.startswith("CREATE TABLE") and f" ON {DROPPED} " not in s
    }
    assert DROPPED not in after  # its rows repeated ledger_entry's column (migration 0018)
    assert {n: after.get(n) for n in dependents} == dependents
    triggers = schema.append_only_triggers(ledger.engine)
    assert {table: sorted(names) for table, names in triggers.items()} == {
        table: [f"{table}_no_delete", f"{table}_no_update"] for table in APPEND_ONLY_TABLES
    }
    with ledger.engine.connect() as connection:
        assert verify(connection).ok


def test_upgrading_a_ledger_builds_its_merkle_tree_over_every_entry(
    sqlite_url: str, policy: Policy, tmp_path: Path
) -> None:
    ledger, _ = _year_at_0005(sqlite_url, policy, tmp_path)
    shown: list[tuple[int, int]] = []
    schema.upgrade(ledger.engine, lambda done, total: shown.append((done, total)))
    with ledger.engine.connect() as connection:
        count = int(connection.exec_driver_sql("SELECT max(seq) FROM ledger_entry").scalar_one())
        leaves = [leaf_bytes(connection, seq) or b"" for seq in range(1, count + 1)]
        assert tree_size(connection) == count - count % STORED_LEAVES
        assert root_at(connection, count) == tree_root(leaves)
    assert shown and shown[-1][1] == count and shown[-1][0] >= count - count % STORED_LEAVES


def _key_indexes(ledger: Ledger) -> list[str]:
    """The hidden indexes SQLite keeps for the keys of the ledger's own tables."""
    keyed = (*APPEND_ONLY_TABLES, "pupil_identity", "alert_outbox", DROPPED)
    return [
        name
        for name in _sqlite_schema(ledger)
        if name.startswith("sqlite_autoindex_")
        and name.removeprefix("sqlite_autoindex_").rsplit("_", 1)[0] in keyed
    ]


def test_an_upgraded_sqlite_ledger_keys_its_tables_without_a_second_index(
    sqlite_url: str,
) -> None:
    ledger = _at_revision(sqlite_url, "0005")
    assert len(_key_indexes(ledger)) == 7

    schema.upgrade(ledger.engine)

    assert _key_indexes(ledger) == []
    tables = _sqlite_schema(ledger)
    for table in ("ledger_entry", "register_fact", "event_payload", "alert_outbox"):
        assert "seq INTEGER NOT NULL" in (tables[table] or "")
    for table in ("entry_pupil", "pupil_identity"):
        assert (tables[table] or "").rstrip().endswith("WITHOUT ROWID")


def test_a_ledger_upgraded_with_entries_takes_more_and_its_chain_holds(
    sqlite_url: str, policy: Policy, tmp_path: Path
) -> None:
    ledger, columns = _year_at_0005(sqlite_url, policy, tmp_path)
    schema.upgrade(ledger.engine)
    upgraded = len(_contents(ledger, columns)["ledger_entry"])

    write_year(ledger, policy, pupils=100, seed=2)

    with ledger.engine.connect() as connection:
        result = verify(connection)
        assert result.ok and result.count > upgraded
        with pytest.raises(LedgerError, match="append-only"):
            connection.exec_driver_sql("DELETE FROM entry_pupil")
