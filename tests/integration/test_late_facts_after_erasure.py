"""A late fact about an erased pupil cannot re-decide their erased events: with the
identity row gone its UPN gets a fresh pseudonym, so it re-decides nothing; its decision
says so, the writer logs how many such facts a batch held, and ``ledger stats`` counts
them, on SQLite and PostgreSQL.

A leaving timed before a referral re-decides the referral (the pupil had left when it
was sent): for a pupil still known it does; for an erased one it cannot.
"""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.engine import Position
from pipeline.ledger.privacy.erasure import erase
from pipeline.ledger.reading.queries import Filters, entries, stats
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.ingest import UNKNOWN_PUPIL_NOTE, LedgerWriter
from pipeline.ledger.writing.pupils import finder
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from tests.factory import left, line, referral, upn
from tests.logged import logged

pytestmark = pytest.mark.integration
PSEUDONYMS = pseudonymiser(bytes(range(32)))
POLICY = load_pack()


class Ledgered:
    def __init__(self, url: str) -> None:
        self.ledger = Ledger.open(url)
        schema.upgrade(self.ledger.engine)
        self.writer = LedgerWriter(self.ledger, POLICY, PSEUDONYMS)
        self.sent = 0

    def send(self, *events: dict[str, Any]) -> None:
        records = []
        for event in events:
            self.sent += 1
            records.append((line(event), Position.line("late", self.sent)))
        self.writer.write(records)

    def sent_logging(self, capsys: pytest.CaptureFixture[str], *events: dict[str, Any]) -> Any:
        """What the writer logged of the batch of ``events``."""
        logs = logged(capsys, lambda: self.send(*events))
        (batch,) = [e for e in logs if e["event"] == "batch_recorded"]
        return batch

    def entries_of(self, event_id: str) -> list[Any]:
        with self.ledger.engine.connect() as connection:
            return [e for e in entries(connection, Filters()) if e.event_id == event_id]

    def counted(self) -> int:
        with self.ledger.engine.connect() as connection:
            return int(stats(connection)["facts_for_unknown_pupils"])


def _erased_after_a_referral(url: str) -> tuple[Ledgered, dict[str, Any]]:
    """Pupil 1 referred, then erased."""
    ledgered = Ledgered(url)
    sent = referral(pupils=[{"upn": upn(1), "dob": "2014-03-09"}])
    ledgered.send(sent, referral(pupils=[{"upn": upn(2)}]))
    erase(
        ledgered.ledger, finder(ledgered.ledger)(upn(1)), by="dpo", reason="asked", rule="request"
    )
    return ledgered, sent


def test_a_late_leaving_of_an_erased_pupil_re_decides_none_of_their_events(db_url: str) -> None:
    ledgered, sent = _erased_after_a_referral(db_url)
    fact = left(upn(1))
    ledgered.send(fact)
    assert [e.kind for e in ledgered.entries_of(sent["id"])] == ["decision"]
    (decided,) = ledgered.entries_of(fact["id"])
    assert decided.decision == "allowed" and decided.rules == ()
    assert decided.reasons == (UNKNOWN_PUPIL_NOTE,)
    assert "re-decides nothing recorded before" in UNKNOWN_PUPIL_NOTE


def test_the_writer_logs_and_stats_count_such_facts(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ledgered, _ = _erased_after_a_referral(db_url)
    batch = ledgered.sent_logging(capsys, left(upn(1)), left(upn(5)))
    assert batch["facts_for_unknown_pupils"] == 2
    assert ledgered.counted() == 2


def test_a_late_fact_about_a_pupil_still_known_re_decides_and_is_not_counted(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ledgered = Ledgered(sqlite_url)
    sent = referral(pupils=[{"upn": upn(2)}])
    ledgered.send(sent, referral(pupils=[{"upn": upn(1)}]))
    erase(
        ledgered.ledger, finder(ledgered.ledger)(upn(1)), by="dpo", reason="asked", rule="request"
    )
    fact = left(upn(2))
    batch = ledgered.sent_logging(capsys, fact)
    assert [e.kind for e in ledgered.entries_of(sent["id"])] == ["decision", "reevaluation"]
    assert ledgered.entries_of(fact["id"])[0].reasons == ()
    assert (batch["facts_for_unknown_pupils"], ledgered.counted()) == (0, 0)


def test_a_fact_about_a_new_pupil_where_nobody_was_erased_says_nothing_of_it(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ledgered = Ledgered(sqlite_url)
    ledgered.send(referral(pupils=[{"upn": upn(2)}]))
    fact = left(upn(1))
    batch = ledgered.sent_logging(capsys, fact)
    assert ledgered.entries_of(fact["id"])[0].reasons == ()
    assert batch["facts_for_unknown_pupils"] == 0


def test_ledger_stats_shows_the_count(sqlite_url: str) -> None:
    ledgered, _ = _erased_after_a_referral(sqlite_url)
    ledgered.send(left(upn(1)))
    done = CliRunner().invoke(app, ["ledger", "stats", "--db", sqlite_url])
    assert done.exit_code == 0, done.stdout + done.stderr
    assert "at schools that had erased a pupil (they re-decide nothing recorded before): 1" in (
        done.stdout
    )
    assert upn(1) not in done.stdout


def test_a_school_that_erases_after_the_writer_last_asked_is_seen(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The writer reads only the erasures appended since it last asked: one school's
    erasure read, another school's erasure after it is not missed."""
    other = "/schools/100002"
    ledgered = Ledgered(sqlite_url)
    ledgered.send(
        referral(pupils=[{"upn": upn(1)}]), referral(pupils=[{"upn": upn(2)}], source=other)
    )
    find = finder(ledgered.ledger)
    erase(ledgered.ledger, find(upn(1)), by="dpo", reason="asked", rule="request")
    assert ledgered.sent_logging(capsys, left(upn(8)))["facts_for_unknown_pupils"] == 1
    assert (
        ledgered.sent_logging(capsys, left(upn(9), source=other))["facts_for_unknown_pupils"] == 0
    )  # nobody erased at the other school yet
    erase(ledgered.ledger, find(upn(2)), by="dpo", reason="asked", rule="request")
    late = left(upn(2), source=other)
    assert ledgered.sent_logging(capsys, late)["facts_for_unknown_pupils"] == 1
    assert ledgered.entries_of(late["id"])[0].reasons == (UNKNOWN_PUPIL_NOTE,)
