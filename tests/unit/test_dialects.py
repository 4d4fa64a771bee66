"""The ledger's two databases, each by its own ways, and no third taken for either."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from pipeline.ledger.dialects import POSTGRESQL, SQLITE, dialect_named, dialect_of
from pipeline.ledger.errors import LedgerError


def test_a_connection_or_engine_is_known_by_its_database() -> None:
    engine = create_engine("sqlite://")
    with engine.connect() as connection:
        assert dialect_of(connection) is dialect_of(engine) is SQLITE
    assert dialect_named("postgresql") is POSTGRESQL


def test_a_database_the_ledger_does_not_run_on_is_named_in_a_clear_error() -> None:
    with pytest.raises(LedgerError, match="SQLite or PostgreSQL, not mysql"):
        dialect_named("mysql")
