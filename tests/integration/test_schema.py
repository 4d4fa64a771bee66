"""Preparing a ledger's schema: create it in an empty database, never change an old one."""

from __future__ import annotations

import pytest
from alembic import command

from pipeline.ledger import schema
from pipeline.ledger.store import Ledger

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
