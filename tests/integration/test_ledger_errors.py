"""The ledger speaks its own errors: a caller above it asks "wait, or give up?" and never
needs to know the driver (pipeline.ledger.storage.errors)."""

from __future__ import annotations

import socket
import threading

import pytest
from sqlalchemy import text

from pipeline.ledger.storage import schema, store
from pipeline.ledger.storage.errors import (
    LedgerBusy,
    LedgerError,
    LedgerRefused,
    LedgerUnavailable,
    NotADatabase,
    is_unavailable,
)
from pipeline.ledger.storage.store import Ledger, make_engine
from pipeline.users import Role, UserExists, add_user


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_database_that_is_down_is_unavailable_so_callers_wait() -> None:
    ledger = Ledger.open(f"postgresql+psycopg://nobody@127.0.0.1:{_closed_port()}/none")
    with pytest.raises(LedgerUnavailable) as caught:
        schema.prepare(ledger.engine)
    assert is_unavailable(caught.value)
    assert "127.0.0.1" in str(caught.value)  # the driver's own first line, to act on
    assert caught.value.__cause__ is not None  # the driver's error, for a maintainer


def test_an_address_that_is_not_a_database_url_is_named_so() -> None:
    with pytest.raises(NotADatabase):
        Ledger.open("this is not a url")


def test_a_pool_that_stays_full_is_busy_and_busy_means_wait(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "POOL_WAIT", 0.2)
    engine = make_engine(db_url, pool_size=1)
    held = [engine.connect(), engine.connect()]  # the pool's one, and its one overflow
    try:
        with pytest.raises(LedgerBusy) as caught:
            engine.connect()
        assert is_unavailable(caught.value)
    finally:
        for connection in held:
            connection.close()
        engine.dispose()


def test_a_row_the_database_keeps_unique_is_refused(db_url: str) -> None:
    ledger = Ledger.open(db_url)
    schema.prepare(ledger.engine)
    add_user(ledger, "dpo", Role.DPO, by="test")
    with pytest.raises(LedgerRefused), ledger.engine.begin() as connection:
        connection.execute(text("INSERT INTO app_user SELECT * FROM app_user"))
    with pytest.raises(UserExists):  # the users module's word for that refusal
        add_user(ledger, "dpo", Role.DPO, by="test")


def test_a_failed_statement_is_a_ledger_error_and_not_a_reason_to_wait(db_url: str) -> None:
    ledger = Ledger.open(db_url)
    schema.prepare(ledger.engine)
    with pytest.raises(LedgerError) as caught, ledger.engine.connect() as connection:
        connection.execute(text("SELECT no_such_column FROM ledger_entry"))
    assert not is_unavailable(caught.value)


def test_errors_are_translated_in_every_thread_that_uses_the_ledger(db_url: str) -> None:
    ledger = Ledger.open(db_url)
    schema.prepare(ledger.engine)
    raised: list[BaseException] = []

    def query() -> None:
        try:
            with ledger.engine.connect() as connection:
                connection.execute(text("SELECT * FROM no_such_table"))
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=query)
    thread.start()
    thread.join()
    assert len(raised) == 1 and isinstance(raised[0], LedgerError)
