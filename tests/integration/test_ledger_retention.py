"""The ledger's own retention: ``sharing-audit ledger retention apply`` and the worker's
daily round erase every pupil kept identifiable past their schools' ``ledger_retention``
after their records' last retention period, and no one else, on SQLite and PostgreSQL.

The ledger here: pupil 1 left on 17 July 2026 and was referred (personal data, kept a
year from leaving: through 17 July 2027); the ledger keeps them 6 more years, through
17 July 2033. Pupil 2 was referred and never left: their period cannot end. Pupil 3 left
too, but their referral went by plain email with medical notes: an open incident.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.engine import Position
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.reading.queries import Filters, entries
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import IDENTITY, Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.pupils import finder
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from pipeline.retention.forgetting import (
    BY,
    KEY_REMAKES,
    OPEN_INCIDENT,
    Daily,
    applied,
    planned,
)
from pipeline.schooltime import at_school
from tests.factory import left, line, referral, upn
from tests.logged import logged

pytestmark = pytest.mark.integration
runner = CliRunner()
KEY = bytes(range(32))
PSEUDONYMS = pseudonymiser(KEY)
#: The last day the ledger keeps pupil 1 identifiable, and the first it lets them go.
KEPT_THROUGH, GONE_ON = date(2033, 7, 17), date(2033, 7, 18)
POLICY = load_pack()


def _write(ledger: Ledger, *events: dict[str, Any]) -> None:
    writer = LedgerWriter(ledger, POLICY, PSEUDONYMS)
    writer.write([(line(e), Position.line("r", n)) for n, e in enumerate(events, 1)])


def ledger_of_three(url: str) -> Ledger:
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    _write(
        ledger,
        left(upn(1)),
        referral(pupils=[{"upn": upn(1), "dob": "2014-03-09"}]),
        referral(pupils=[{"upn": upn(2), "dob": "2014-11-23"}]),
        left(upn(3)),
        referral(
            pupils=[{"upn": upn(3), "dob": "2015-06-02"}],
            channel="email",
            categories=["personal", "medical"],
            special_condition="9.2.h",
        ),
    )
    return ledger


def _plan(ledger: Ledger, as_of: date, key: bool = True) -> Any:
    with ledger.engine.connect() as connection:
        return planned(connection, lambda _: POLICY, as_of, PSEUDONYMS if key else None)


def _erasures(ledger: Ledger) -> list[Any]:
    with ledger.engine.connect() as connection:
        return list(entries(connection, Filters(kind=EntryKind.ERASURE)))


def test_a_pupil_past_the_ledgers_retention_is_erased_under_the_rule_retention(
    db_url: str,
) -> None:
    ledger = ledger_of_three(db_url)
    pupil = finder(ledger)(upn(1))
    done = applied(ledger, _plan(ledger, GONE_ON))
    assert (done.erased, done.skipped) == (1, 1)
    (erasure,) = _erasures(ledger)
    assert erasure.pupil_keys == (pupil,)
    assert (erasure.details or {})["rule"] == "retention"
    assert (erasure.details or {})["by"] == BY
    assert finder(ledger)(upn(1)) != pupil
    with ledger.engine.connect() as connection:
        assert verify(connection, PSEUDONYMS).ok


def test_on_the_last_day_the_ledger_keeps_them_the_pupil_is_kept(sqlite_url: str) -> None:
    ledger = ledger_of_three(sqlite_url)
    assert _plan(ledger, KEPT_THROUGH).erase == []
    assert _plan(ledger, GONE_ON).erase == [finder(ledger)(upn(1))]


def test_a_pupil_still_on_roll_is_never_erased(sqlite_url: str) -> None:
    ledger = ledger_of_three(sqlite_url)
    pupil = finder(ledger)(upn(2))
    plan = _plan(ledger, date(2099, 1, 1))
    assert pupil not in plan.erase and pupil not in {s.pupil for s in plan.skipped}


def test_a_pupil_an_open_incident_concerns_is_passed_over_saying_so(db_url: str) -> None:
    ledger = ledger_of_three(db_url)
    pupil = finder(ledger)(upn(3))
    plan = _plan(ledger, GONE_ON)
    assert [(s.pupil, s.why) for s in plan.skipped] == [(pupil, OPEN_INCIDENT)]
    applied(ledger, plan)
    assert finder(ledger)(upn(3)) == pupil


def test_a_pupil_whose_pseudonym_the_key_remakes_is_passed_over_until_the_key_rotates(
    sqlite_url: str,
) -> None:
    """Recorded before migration 0011, the pupil's pseudonym is the key's HMAC of the
    UPN: erasing the row would leave the key leading to their leaves."""
    ledger = Ledger.open(sqlite_url)
    schema.upgrade(ledger.engine)
    old = PSEUDONYMS(upn(4))
    with ledger.engine.begin() as connection:
        connection.execute(IDENTITY.insert().values(pupil_key=old, upn=upn(4), dob=None))
    _write(ledger, left(upn(4)), referral(pupils=[{"upn": upn(4)}]))
    assert finder(ledger)(upn(4)) == old
    plan = _plan(ledger, GONE_ON)
    assert [(s.pupil, s.why) for s in plan.skipped] == [(old, KEY_REMAKES)]
    assert "sharing-audit ledger rotate-key" in KEY_REMAKES
    assert _plan(ledger, GONE_ON, key=False).erase == [old]  # no key held: nothing remakes it


def test_an_identity_row_a_restored_backup_brought_back_is_erased_again(db_url: str) -> None:
    ledger = ledger_of_three(db_url)
    pupil = finder(ledger)(upn(1))
    with ledger.engine.connect() as connection:
        (row,) = connection.execute(select(IDENTITY).where(IDENTITY.c.pupil_key == pupil)).all()
    applied(ledger, _plan(ledger, GONE_ON))
    with ledger.engine.begin() as connection:
        connection.execute(IDENTITY.insert().values(row._mapping))  # the backup restored
    plan = _plan(ledger, GONE_ON)
    assert (plan.restored, plan.erase) == (1, [])
    assert applied(ledger, plan).restored == 1
    assert finder(ledger)(upn(1)) != pupil and len(_erasures(ledger)) == 1
    with ledger.engine.connect() as connection:
        assert verify(connection, PSEUDONYMS).ok


def test_two_workers_rounds_on_one_day_erase_each_pupil_once(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = ledger_of_three(db_url)
    first = Daily(ledger, lambda _: POLICY, PSEUDONYMS)
    second = Daily(Ledger.open(db_url), lambda _: POLICY, PSEUDONYMS)
    now = at_school(GONE_ON, 3)
    logs = logged(capsys, lambda: (first(now), second(now)))
    done, again = first(now), second(now)  # done today already: nothing more
    assert done is None and again is None
    assert first.done_on == second.done_on == GONE_ON
    assert len(_erasures(ledger)) == 1
    counts = [e for e in logs if e["event"] == "ledger_retention_applied"]
    assert [(e["erased"], e["skipped"]) for e in counts] == [(1, 1), (0, 1)]
    assert upn(1) not in repr(logs)


def test_a_workers_round_applies_it_once_a_school_day(sqlite_url: str) -> None:
    ledger = ledger_of_three(sqlite_url)
    round_ = Daily(ledger, lambda _: POLICY, PSEUDONYMS)
    assert round_(at_school(KEPT_THROUGH, 9)) is not None
    assert round_(at_school(KEPT_THROUGH, 17)) is None  # done today
    later = round_(datetime.combine(GONE_ON, datetime.min.time(), at_school(GONE_ON, 0).tzinfo))
    assert later is not None and later.erased == 1


@pytest.fixture
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARING_AUDIT_PSEUDONYM_KEY", KEY.hex())


def _apply(url: str, *more: str) -> Any:
    args = ["ledger", "retention", "apply", "--as-of", GONE_ON.isoformat(), "--db", url]
    return runner.invoke(app, [*args, *more])


@pytest.mark.usefixtures("_key")
def test_the_dry_run_lists_pupils_by_pseudonym_prefix_and_erases_nothing(
    sqlite_url: str,
) -> None:
    ledger = ledger_of_three(sqlite_url)
    gone, busy = finder(ledger)(upn(1)), finder(ledger)(upn(3))
    done = _apply(sqlite_url, "--dry-run")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert f"would erase {gone[:12]}" in done.stdout
    assert f"would pass over {busy[:12]}: {OPEN_INCIDENT}" in done.stdout
    assert "it would erase 1 pupil, pass over 1" in done.stdout
    assert all(upn(n) not in done.stdout for n in (1, 2, 3))
    assert _erasures(ledger) == [] and finder(ledger)(upn(1)) == gone


@pytest.mark.usefixtures("_key")
def test_the_command_says_how_many_it_erased_and_passed_over_and_never_a_upn(
    sqlite_url: str,
) -> None:
    ledger = ledger_of_three(sqlite_url)
    done = _apply(sqlite_url)
    assert done.exit_code == 0, done.stdout + done.stderr
    assert "erased 1 pupil, passed over 1" in done.stdout
    assert "identity rows of erased pupils erased again: 0" in done.stdout
    assert all(upn(n) not in done.stdout + done.stderr for n in (1, 2, 3))
    assert len(_erasures(ledger)) == 1
    again = _apply(sqlite_url)
    assert "erased 0 pupils" in again.stdout


@pytest.mark.usefixtures("_key")
def test_a_day_that_is_not_a_date_is_refused_naming_it(sqlite_url: str) -> None:
    ledger_of_three(sqlite_url)
    args = ["ledger", "retention", "apply", "--as-of", "2033-13-01", "--db", sqlite_url]
    done = runner.invoke(app, args)
    assert done.exit_code == 2 and "--as-of '2033-13-01': not a date" in done.stderr
