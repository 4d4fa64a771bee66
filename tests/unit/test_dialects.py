"""The ledger's two databases, each by its own ways, and no third taken for either."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine

from pipeline.ledger.storage.dialects import POSTGRESQL, SQLITE, dialect_named, dialect_of
from pipeline.ledger.storage.errors import LedgerError, NotADatabase
from pipeline.ledger.storage.store import make_engine


def test_a_connection_or_engine_is_known_by_its_database() -> None:
    engine = create_engine("sqlite://")
    with engine.connect() as connection:
        assert dialect_of(connection) is dialect_of(engine) is SQLITE
    assert dialect_named("postgresql") is POSTGRESQL


def test_a_database_the_ledger_does_not_run_on_is_named_in_a_clear_error() -> None:
    with pytest.raises(LedgerError, match="SQLite or PostgreSQL, not mysql"):
        dialect_named("mysql")


def test_a_ledger_url_of_another_database_is_refused_naming_it() -> None:
    with pytest.raises(NotADatabase, match=r"SQLite or PostgreSQL, not mysql\)"):
        make_engine("mysql://someone@db.example/ledger")


def test_a_new_sqlite_ledger_file_is_its_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA secure_delete").scalar_one() == 1
    engine.dispose()
    assert path.stat().st_mode & 0o777 == 0o600
