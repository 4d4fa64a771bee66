"""A DPO working the breach desk never stalls the writer (issue 33): the desk reads the
incidents from the rows kept on append and takes the chain's lock only to append its
action, so the worker writes 20,000 events through the real broker at least 0.9 as fast
with a DPO acting on incidents in a loop as without one, in the same run.

The writer's rate is read from the ledger itself (decisions between the 10% and the 90%
mark over the time between their transactions), so that start-up, the last stragglers
and the test's own polling weigh on neither run. Timed on a shared machine: the figures
are printed, and the bound is the issue's.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from pipeline.checking import expected_of
from pipeline.engine import Engine
from pipeline.incidents.desk import UnknownIncident, incidents, take_action
from pipeline.incidents.lifecycle import Action, ActionKind, Risk, TransitionRefused
from pipeline.ledger.incident_projection import ACTION_KIND
from pipeline.ledger.store import ENTRY, Ledger, from_utc_text
from pipeline.policy.pack import Policy
from pipeline.transport.mis import MisProducer
from pipeline.transport.processes import Pipeline
from tests.integration.streaming import kafka_broker, ledger_count, wait_until
from tests.integration.test_pipeline_faults import KEY_ENV, year_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 20_000
#: The DPO's pause between two turns of the loop: ten turns a second at most, each
#: reading the queue, opening an incident and taking the next step on it.
PAUSE = 0.1


@contextmanager
def fresh_database(kind: str, pg_admin: str | None, folder: Path) -> Iterator[str]:
    """A new, empty ledger database of ``kind`` for one run, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder}/{uuid.uuid4().hex[:8]}.db"
        return
    assert pg_admin is not None
    name = f"sa_dpo_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Dpo(threading.Thread):
    """A DPO working the queue until told to stop: read the open incidents, take the
    next step the most urgent allows, through the functions the desk calls."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        ledger = Ledger.open(self.url)
        try:
            while not self.stop.is_set():
                self._turn(ledger)
                self.stop.wait(PAUSE)
        except BaseException as exc:  # said by the test, not lost in the thread
            self.error = exc
        finally:
            ledger.engine.dispose()

    def _turn(self, ledger: Ledger) -> None:
        with ledger.engine.connect() as connection:
            found = incidents(connection, open_only=True)
        for number, incident in sorted(found.items()):
            allowed = incident.allowed()
            if not allowed:
                continue
            now = datetime.now(UTC)
            action = Action(
                allowed[0],
                "dpo",
                now,
                risk=Risk.HIGH_RISK if allowed[0] is ActionKind.ASSESS else None,
                reasons="looked into",
                ico_reference="ICO-33",
                reported_at=now,
            )
            try:
                take_action(ledger, number, action)
            except (TransitionRefused, UnknownIncident):
                continue  # another step came first: the next turn sees it
            return


def writer_rate(url: str) -> tuple[float, int]:
    """Decisions a second between the 10% and the 90% mark, by the times of the
    transactions that recorded them; and how many incident actions were recorded between
    those marks (those the writer's rate was taken beside)."""
    ledger = Ledger.open(url)
    with ledger.engine.connect() as connection:
        times = list(
            connection.execute(
                select(ENTRY.c.recorded_at).where(ENTRY.c.kind == "decision").order_by(ENTRY.c.seq)
            ).scalars()
        )
        low, high = len(times) // 10, len(times) * 9 // 10
        beside = connection.execute(
            select(func.count()).where(
                ENTRY.c.kind == ACTION_KIND,
                ENTRY.c.recorded_at >= times[low],
                ENTRY.c.recorded_at <= times[high],
            )
        ).scalar_one()
    ledger.engine.dispose()
    seconds = (from_utc_text(times[high]) - from_utc_text(times[low])).total_seconds()
    return (high - low) / seconds, int(beside)


def written(
    url: str, records: list[bytes], decisions: int, folder: Path, with_dpo: bool
) -> tuple[float, int]:
    """The writer's rate over ``records`` (``decisions`` decision entries) on a fresh
    broker, and the DPO's actions taken while it was measured."""
    with (
        contextmanager(kafka_broker)() as kafka,
        Pipeline(url, kafka, worker_log=folder / "worker.log", env=KEY_ENV),
    ):
        dpo = Dpo(url)
        if with_dpo:  # the desk is open before the first record comes
            assert wait_until(lambda: _ready(url), timeout=60)
            dpo.start()
        with MisProducer(kafka) as producer:
            producer.send_all(records, timeout=120)
        done = wait_until(lambda: ledger_count(url) >= decisions, timeout=240, every=1)
        dpo.stop.set()
        if with_dpo:
            dpo.join(30)
        assert done, (folder / "worker.log").read_text()[-3000:]
        assert dpo.error is None, repr(dpo.error)
    return writer_rate(url)


def _ready(url: str) -> bool:
    """The worker has made the ledger's schema (the desk can be read)."""
    ledger = Ledger.open(url)
    try:
        with ledger.engine.connect() as connection:
            incidents(connection)
        return True
    except Exception:
        return False
    finally:
        ledger.engine.dispose()


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_a_dpo_acting_in_a_loop_costs_the_writer_under_a_tenth(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, policy: Policy
) -> None:
    admin = str(request.getfixturevalue("pg_admin_url")) if kind == "postgresql" else None
    records = year_events(9_500, seed=11)[:EVENTS]
    assert len(records) == EVENTS
    decisions = expected_of(records, Engine(policy)).entries
    rates: dict[bool, float] = {}
    actions = 0
    for with_dpo in (False, True):
        folder = tmp_path / ("dpo" if with_dpo else "alone")
        folder.mkdir()
        with fresh_database(kind, admin, folder) as url:
            started = time.monotonic()
            rates[with_dpo], taken = written(url, records, decisions, folder, with_dpo)
            took = time.monotonic() - started
            actions += taken
        print(
            f"{kind} with_dpo={with_dpo} rate={rates[with_dpo]:.0f}/s actions={taken} {took:.1f}s"
        )
    ratio = rates[True] / rates[False]
    print(f"{kind} writer_ratio={ratio:.2f}")
    assert actions >= 20, f"the DPO took only {actions} actions while the writer was timed"
    assert ratio >= 0.9, f"with a DPO {rates[True]:.0f}/s, alone {rates[False]:.0f}/s"
