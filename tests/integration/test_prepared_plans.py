"""On PostgreSQL the ledger's statements are planned with their values each time: a
statement the driver prepared is soon run on the server's generic plan, which cannot use a
partial index through a parameter (``kind = $1`` against the event-id index's ``kind =
'decision'``, ``upn <> $2`` against the UPN index's). Chosen while the tables were small,
such a plan scanned them whole as they grew: the writer ran 14 times slower at 30,000
entries than at none (``bench/scale.py``)."""

from __future__ import annotations

import pytest

from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.pupils import pseudonyms_of

pytestmark = [pytest.mark.integration]


def test_on_postgresql_a_statement_run_again_and_again_is_never_prepared_on_the_server(
    pg_url: str,
) -> None:
    ledger = Ledger.open(pg_url)
    schema.prepare(ledger.engine)
    try:
        with ledger.engine.connect() as connection:
            for _ in range(12):  # psycopg prepares a statement on its fifth run by default
                pseudonyms_of(connection, ["A123456789012"])
            prepared = connection.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements")
            assert prepared.scalar_one() == 0
    finally:
        ledger.engine.dispose()
