"""Acts appended by many threads at once: each in the chain, with its own seq, before its
thread goes on; those waiting share one transaction; one that cannot be written fails
alone. On both databases."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import pytest
from sqlalchemy import event

from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.reading.queries import entry_at
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.acts import append_act

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(db_url: str) -> Ledger:
    opened = Ledger.open(db_url)
    schema.upgrade(opened.engine)
    return opened


def at_once(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Each call on a thread of its own, started together; each one's result or error."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(n: int) -> None:
        start.wait()
        try:
            results[n] = calls[n]()
        except Exception as exc:
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def while_the_chain_is_held(ledger: Ledger, calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """``calls`` started while another transaction holds the chain's lock, so that they
    all queue behind it; the lock is let go once they have had time to queue."""
    with ledger.locked():
        results: list[Any] = []
        running = threading.Thread(target=lambda: results.extend(at_once(calls)))
        running.start()
        time.sleep(1.0)
    running.join(60)
    return results


def reading(n: int) -> dict[str, Any]:
    return {"action": "search", "by": f"auditor-{n}", "returned": n}


def test_acts_appended_at_once_each_get_their_own_seq_in_an_intact_chain(ledger: Ledger) -> None:
    calls = [partial(append_act, ledger, EntryKind.READ, reading(n)) for n in range(40)]
    seqs = at_once(calls)
    assert sorted(seqs) == list(range(1, 41))
    with ledger.engine.connect() as connection:
        for n, seq in enumerate(seqs):
            found = entry_at(connection, seq)
            assert found is not None and found.details == reading(n)
        assert verify(connection).ok


def test_acts_waiting_behind_the_lock_are_committed_together(ledger: Ledger) -> None:
    commits: list[int] = []
    event.listen(ledger.engine, "commit", lambda _: commits.append(1))
    calls = [partial(append_act, ledger, EntryKind.READ, reading(n)) for n in range(16)]
    seqs = while_the_chain_is_held(ledger, calls)
    assert sorted(seqs) == list(range(1, 17))
    # One for the first to come (it waited on the lock itself), one for all the others.
    assert len(commits) <= 3, commits


def test_an_act_that_cannot_be_written_fails_alone(ledger: Ledger) -> None:
    unwritable = {"action": "search", "by": object()}  # not JSON: the hash cannot be taken
    calls = [partial(append_act, ledger, EntryKind.READ, reading(n)) for n in range(8)]
    calls.insert(4, partial(append_act, ledger, EntryKind.READ, unwritable))
    results = while_the_chain_is_held(ledger, calls)
    failed = results.pop(4)
    assert isinstance(failed, TypeError)
    assert sorted(results) == list(range(1, 9))
    with ledger.engine.connect() as connection:
        assert verify(connection).ok
