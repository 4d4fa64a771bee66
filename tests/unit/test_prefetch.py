"""Pages fetched ahead by a thread of their own
(pipeline.ledger.integrity.verification.prefetched): in order, a failure raised where the
pages are read, and nothing left running when the reader stops early (ledger verify stops
at the first fault)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pipeline.ledger.integrity.verification import prefetched


def test_every_page_arrives_in_order() -> None:
    assert list(prefetched(iter(range(50)))) == list(range(50))


def test_a_failure_while_fetching_is_raised_to_the_reader() -> None:
    def pages() -> Iterator[int]:
        yield 1
        raise ConnectionError("the database went away")

    read = prefetched(pages())
    assert next(read) == 1
    with pytest.raises(ConnectionError, match="went away"):
        next(read)


def test_a_reader_that_stops_early_leaves_no_fetch_running() -> None:
    fetched = []

    def pages() -> Iterator[int]:
        for n in range(10_000):
            fetched.append(n)
            yield n

    read = prefetched(pages(), depth=2)
    assert next(read) == 0
    read.close()
    assert not any(t.name == "ledger-prefetch" for t in threading.enumerate())
    assert len(fetched) < 10  # stopped, not drained to the end
