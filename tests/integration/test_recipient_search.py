"""An auditor's search by recipient: every entry whose hashed recipient is the one asked,
in seq order, a page at a time, read through the entry's own column (its index, since
migration 0018), on both databases."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import insert

from pipeline.ledger.reading.queries import Filters, count, entries
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import ENTRY, Ledger
from pipeline.policy.pack import Policy
from tests.integration.year import write_year

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(db_url: str, policy: Policy) -> Iterator[Ledger]:
    opened = Ledger.open(db_url)
    schema.upgrade(opened.engine)
    write_year(opened, policy, pupils=40, seed=5)
    yield opened
    opened.engine.dispose()


def test_a_recipient_search_finds_every_entry_sent_to_it_and_no_other(ledger: Ledger) -> None:
    with ledger.engine.connect() as connection:
        every = list(entries(connection, Filters()))
        sent_to = {e.recipient for e in every if e.recipient}
        assert len(sent_to) > 2
        for recipient in sent_to:
            found = [e.seq for e in entries(connection, Filters(recipient=recipient))]
            assert found == [e.seq for e in every if e.recipient == recipient]
            assert count(connection, Filters(recipient=recipient)) == len(found)


def test_a_recipient_search_reads_a_page_at_a_time_in_seq_order(ledger: Ledger) -> None:
    with ledger.engine.connect() as connection:
        every = list(entries(connection, Filters()))
        busiest = max(
            {e.recipient for e in every if e.recipient},
            key=lambda r: sum(e.recipient == r for e in every),
        )
        wanted = [e.seq for e in every if e.recipient == busiest]
        assert len(wanted) > 10
        pages: list[int] = []
        after = 0
        while True:
            page = [
                e.seq
                for e in entries(connection, Filters(recipient=busiest, after_seq=after, limit=4))
            ]
            if not page:
                break
            pages += page
            after = page[-1]
        assert pages == wanted


def test_an_entry_whose_recipient_no_index_entry_could_hold_is_kept(pg_url: str) -> None:
    """Before the contract held recipients to its pattern, one could be kilobytes long:
    PostgreSQL refuses an index entry of more than about 2.7 KB, so the recipient index
    leaves such an entry out rather than the upgrade (or the append) failing on it."""
    ledger = Ledger.open(pg_url)
    schema.upgrade(ledger.engine)
    long = secrets.token_hex(4_000)  # 8,000 characters that do not compress
    with ledger.engine.begin() as connection:
        connection.execute(
            insert(ENTRY).values(
                seq=1,
                kind="decision",
                recorded_at="2020-01-01T00:00:00.000000Z",
                recipient=long,
                pupil_keys="[]",
                categories="[]",
                rules="[]",
                reasons="[]",
                prev_hash="0" * 64,
                hash="1" * 64,
            )
        )
    with ledger.engine.connect() as connection:
        assert [e.seq for e in entries(connection, Filters())] == [1]
        assert list(entries(connection, Filters(recipient=long))) == []
    ledger.engine.dispose()
