"""Pseudonyms a key cannot remake: a pupil new to the ledger is given a random one, found
again through their identity row, and several writers at once give each pupil one."""

from __future__ import annotations

import multiprocessing

import orjson
import pytest
from sqlalchemy import select

from pipeline.engine import Position
from pipeline.ledger import schema
from pipeline.ledger.ingest import LedgerWriter, Record
from pipeline.ledger.pupils import NOBODY, finder
from pipeline.ledger.queries import entries
from pipeline.ledger.store import IDENTITY, Ledger
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from tests.factory import census, referral, upn
from tests.integration.breaches import KEY

pytestmark = pytest.mark.integration
PUPILS = [upn(n) for n in range(1, 31)]


def _events(worker: int) -> list[dict[str, object]]:
    """Each worker's events name every pupil: a census of all, then a referral of each."""
    return [
        census(pupils=[{"upn": u} for u in PUPILS]),
        *(referral(pupils=[{"upn": u}]) for u in PUPILS[worker::3]),
        *(referral(pupils=[{"upn": u}]) for u in reversed(PUPILS)),
    ]


def _write_in_process(url: str, worker: int) -> None:
    ledger = Ledger.open(url)
    writer = LedgerWriter(ledger, load_pack(), pseudonymiser(KEY))
    records: list[Record] = [
        (orjson.dumps(e), Position(f"topic-{worker}", 0, n)) for n, e in enumerate(_events(worker))
    ]
    for start in range(0, len(records), 4):
        writer.write(records[start : start + 4])


def test_a_new_pupils_pseudonym_is_not_made_from_their_upn(sqlite_url: str) -> None:
    ledger = Ledger.open(sqlite_url)
    schema.upgrade(ledger.engine)
    writer = LedgerWriter(ledger, load_pack(), pseudonymiser(KEY))
    writer.write([(orjson.dumps(referral(pupils=[{"upn": upn(1)}])), Position.line("f", 1))])
    found = finder(ledger)(upn(1))
    assert found not in (NOBODY, pseudonymiser(KEY)(upn(1)))
    assert finder(ledger)(upn(2)) == NOBODY  # a UPN never recorded names nobody


def test_three_writers_at_once_give_each_pupil_one_pseudonym(db_url: str) -> None:
    ledger = Ledger.open(db_url)
    schema.upgrade(ledger.engine)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_in_process, args=(db_url, n)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    with ledger.engine.connect() as connection:
        rows = connection.execute(select(IDENTITY.c.upn, IDENTITY.c.pupil_key)).all()
        named = {key for entry in entries(connection) for key in entry.pupil_keys}
    assert sorted(u for u, _ in rows) == sorted(PUPILS)  # one row, one pseudonym, each
    assert named == {key for _, key in rows}  # and every entry names a pupil by it
