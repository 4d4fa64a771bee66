"""Pseudonyms a key cannot remake: a pupil new to the ledger is given a random one, found
again through their identity row, and several writers at once give each pupil one, even
when some are killed mid-way and start again on the same records."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from pipeline.engine import Position
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.reading.queries import entries
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import IDENTITY, Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.pupils import NOBODY, finder
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from tests.factory import census, referral, upn
from tests.integration.breaches import KEY

pytestmark = pytest.mark.integration


def test_a_new_pupils_pseudonym_is_not_made_from_their_upn(sqlite_url: str) -> None:
    ledger = Ledger.open(sqlite_url)
    schema.upgrade(ledger.engine)
    writer = LedgerWriter(ledger, load_pack(), pseudonymiser(KEY))
    writer.write([(orjson.dumps(referral(pupils=[{"upn": upn(1)}])), Position.line("f", 1))])
    found = finder(ledger)(upn(1))
    assert found not in (NOBODY, pseudonymiser(KEY)(upn(1)))
    assert finder(ledger)(upn(2)) == NOBODY  # a UPN never recorded names nobody


def test_on_postgresql_an_event_bringing_nothing_new_of_a_known_pupil_leaves_their_row_alone(
    pg_url: str,
) -> None:
    """Most events name pupils the ledger knows: their identity rows are not written, nor
    locked (an upsert that changes nothing would still lock each row and log it, the
    writer's largest cost at millions of entries, issue 33); a date of birth they lack is
    still written."""
    ledger = Ledger.open(pg_url)
    schema.upgrade(ledger.engine)
    writer = LedgerWriter(ledger, load_pack(), pseudonymiser(KEY))

    def sent(*events: dict[str, Any]) -> None:
        writer.write([(orjson.dumps(e), Position.line("f", n)) for n, e in enumerate(events)])

    def row() -> tuple[str, str, str | None]:
        with ledger.engine.connect() as connection:
            found = connection.exec_driver_sql(
                "SELECT xmin::text, xmax::text, dob FROM pupil_identity WHERE upn = %s",
                (upn(1),),
            ).one()
        return str(found[0]), str(found[1]), found[2]

    sent(referral(pupils=[{"upn": upn(1)}]))
    before = row()
    sent(referral(pupils=[{"upn": upn(1)}]), census(pupils=[{"upn": upn(1)}, {"upn": upn(2)}]))
    assert row() == before
    sent(referral(pupils=[{"upn": upn(1), "dob": "2014-03-01"}]))
    assert row()[2] == "2014-03-01"
    with ledger.engine.connect() as connection:
        assert verify(connection).ok


# -- several writers at once ------------------------------------------------------------

NEW_PUPILS = [upn(n, la=851) for n in range(60)]
BATCH = 3


def _year_of_new_pupils() -> list[dict[str, Any]]:
    """A census of each class of twenty (with dates of birth), and two referrals of each
    pupil: every event names pupils new to the ledger."""
    classes = [NEW_PUPILS[start : start + 20] for start in range(0, len(NEW_PUPILS), 20)]
    return [
        *(census(pupils=[{"upn": u, "dob": "2015-03-01"} for u in c]) for c in classes),
        *(referral(pupils=[{"upn": u}]) for u in NEW_PUPILS for _ in range(2)),
    ]


def _overlapping_batches(events: list[dict[str, Any]], worker: int) -> list[list[bytes]]:
    """Two thirds of the events, each event going to two of the three workers (as a
    rebalance hands a partition over before the first worker's offsets are committed),
    each worker's share in its own order, in batches."""
    mine = [orjson.dumps(e) for n, e in enumerate(events) if n % 3 != worker]
    random.Random(worker).shuffle(mine)
    return [mine[start : start + BATCH] for start in range(0, len(mine), BATCH)]


def _write_batches(
    url: str, worker: int, batches: list[list[bytes]], done: Synchronized[int]
) -> None:
    ledger = Ledger.open(url)
    writer = LedgerWriter(ledger, load_pack(), pseudonymiser(KEY))
    for n, batch in enumerate(batches):
        writer.write(
            [(raw, Position(f"topic-{worker}", 0, n * BATCH + i)) for i, raw in enumerate(batch)]
        )
        with done.get_lock():
            done.value = n + 1
        time.sleep(0.05)  # as a worker waits for its next poll: time for a kill to land


def _one_pseudonym_each(ledger: Ledger, events: list[dict[str, Any]]) -> None:
    """Each pupil has one identity row, and every entry of an event names each of its
    pupils by that row's pseudonym, never the key's HMAC of the UPN; each event is
    recorded once; the ledger verifies."""
    upns_of = {e["id"]: [p["upn"] for p in e["data"]["pupils"]] for e in events}
    with ledger.engine.connect() as connection:
        rows = connection.execute(select(IDENTITY.c.upn, IDENTITY.c.pupil_key)).all()
        recorded = list(entries(connection))
        checked = verify(connection, pseudonymiser(KEY))
    pseudonym = dict(rows)
    assert sorted(u for u, _ in rows) == sorted(NEW_PUPILS)  # one identity row each
    decided = [e for e in recorded if e.kind == "decision"]
    assert sorted(str(e.event_id) for e in decided) == sorted(upns_of)  # each event once
    for entry in recorded:  # every entry names each pupil by their one pseudonym
        if entry.event_id in upns_of:
            assert list(entry.pupil_keys) == [pseudonym[u] for u in upns_of[entry.event_id]]
    assert not {pseudonymiser(KEY)(u) for u in NEW_PUPILS} & set(pseudonym.values())
    assert checked.ok, checked.fault


def test_three_writers_at_once_give_each_pupil_one_pseudonym(db_url: str) -> None:
    ledger = Ledger.open(db_url)
    schema.upgrade(ledger.engine)
    events = _year_of_new_pupils()
    context = multiprocessing.get_context("spawn")
    done = [context.Value("i", 0) for _ in range(3)]  # held here until the workers end
    workers = [
        context.Process(
            target=_write_batches, args=(db_url, n, _overlapping_batches(events, n), done[n])
        )
        for n in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    _one_pseudonym_each(ledger, events)


@pytest.mark.slow  # worker processes, killed and started again
def test_three_workers_killed_and_restarted_on_postgresql_give_each_pupil_one_pseudonym(
    pg_url: str,
) -> None:
    """Two of the three are SIGKILLed halfway through their batches (perhaps inside a
    transaction, holding the chain-head lock) and started again on the same batches, as
    a worker is on the records after its last committed offset."""
    ledger = Ledger.open(pg_url)
    schema.upgrade(ledger.engine)
    events = _year_of_new_pupils()
    context = multiprocessing.get_context("spawn")
    shares = [_overlapping_batches(events, worker) for worker in range(3)]
    done = [context.Value("i", 0) for _ in range(3)]

    def started(worker: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(
            target=_write_batches, args=(pg_url, worker, shares[worker], done[worker])
        )
        process.start()
        return process

    workers = [started(worker) for worker in range(3)]
    for victim in (0, 1):
        deadline = time.monotonic() + 120
        while done[victim].value < len(shares[victim]) // 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert workers[victim].is_alive(), "the worker ended before it could be killed"
        os.kill(workers[victim].pid or 0, signal.SIGKILL)
        workers[victim].join(30)
        assert workers[victim].exitcode == -signal.SIGKILL
        workers[victim] = started(victim)
    for worker in workers:
        worker.join(180)
        assert worker.exitcode == 0

    _one_pseudonym_each(ledger, events)
