"""The agents' ledger sink: nothing escapes it, and nothing is lost to a failure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.sink import LedgerSink
from agents.writer import WriterSpec
from pipeline.engine import Position
from pipeline.ledger.reading.queries import current_decisions, entry_count
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.ingest import LedgerWriter, Record
from pipeline.policy.pack import Policy
from tests.factory import census, line, referral

pytestmark = pytest.mark.integration
KEY = bytes(range(32))


def _sink(tmp_path: Path, policy: Policy) -> tuple[LedgerSink, Ledger]:
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    return LedgerSink(WriterSpec(url, policy, KEY, "WARNING"), first_delay=0.01), ledger


def _records(*events: dict[str, Any]) -> list[Record]:
    return [(line(e), Position("sharing.referral", 0, i)) for i, e in enumerate(events)]


def test_batches_from_several_agents_are_each_answered_with_their_own_records(
    tmp_path: Path, policy: Policy
) -> None:
    sink, ledger = _sink(tmp_path, policy)
    first = [(line(referral()), Position("sharing.referral", 0, n)) for n in range(3)]
    second = [(line(census()), Position("sharing.census", 1, n)) for n in range(2)]

    async def both() -> list[list[Any]]:
        return list(await asyncio.gather(sink.write(first), sink.write(second)))

    try:
        answered = asyncio.run(both())
    finally:
        sink.close()
    assert [h.position for h in answered[0]] == [p for _, p in first]
    assert [h.position for h in answered[1]] == [p for _, p in second]
    with ledger.engine.connect() as connection:
        assert entry_count(connection) == 5


def test_a_record_the_engine_fails_on_is_recorded_as_rejected_and_the_rest_decided(
    tmp_path: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = referral(purpose="poison")
    original = LedgerWriter.write

    def failing(self: LedgerWriter, records: Any, undecidable: str | None = None) -> Any:
        if undecidable is None and any(b"poison" in raw for raw, _ in records):
            raise ValueError("a bug in the engine")
        return original(self, records, undecidable)

    # The writer process is forked when the sink first writes, so it inherits this.
    monkeypatch.setattr(LedgerWriter, "write", failing)
    sink, ledger = _sink(tmp_path, policy)
    good = [referral(), referral()]
    try:
        handled = asyncio.run(sink.write(_records(good[0], poison, good[1])))
    finally:
        sink.close()
    assert len(handled) == 3
    with ledger.engine.connect() as connection:
        final = current_decisions(connection)
        reasons = connection.exec_driver_sql(
            "SELECT reasons FROM ledger_entry WHERE event_id = ?", (poison["id"],)
        ).scalar_one()
    assert final[poison["id"]] == ("rejected", ("event.invalid",))
    assert "internal error ValueError" in orjson.loads(reasons)[0]
    assert final[good[0]["id"]][0] != "rejected" and final[good[1]["id"]][0] != "rejected"


def test_a_record_that_fails_even_its_reading_is_recorded_and_every_batch_answered(
    tmp_path: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain a record nested 300 deep once took: reading it raised, so did the writer's
    last resort, and the batch was never answered (so never acked)."""
    from pipeline.policy.intake import read_event as real

    def failing(raw: bytes) -> Any:
        if b"poison" in raw:
            raise TypeError("a bug in reading")
        return real(raw)

    monkeypatch.setattr("pipeline.ledger.writing.ingest.read_event", failing)
    sink, ledger = _sink(tmp_path, policy)
    good = [referral(), referral()]
    records = _records(good[0], referral(purpose="poison"), good[1])
    try:
        handled = asyncio.run(asyncio.wait_for(sink.write(records), timeout=60))
    finally:
        sink.close()
    assert [h.position for h in handled] == [p for _, p in records]
    with ledger.engine.connect() as connection:
        assert entry_count(connection) == 3
        reasons = connection.exec_driver_sql(
            'SELECT reasons FROM ledger_entry WHERE "offset" = 1'
        ).scalar_one()
    assert "internal error TypeError" in orjson.loads(reasons)[0]
