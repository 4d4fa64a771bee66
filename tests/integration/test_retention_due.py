"""``sharing-audit retention due`` on a simulated year: the command's list is the truth the
simulator knows by construction (what each school shared of each pupil, when it recorded
their leaving, their date of birth, what it recorded destroyed), to the day.

The periods are written here as the england-schools pack states them, not read from it:
attendance 6 years from the record, SEN 31 years from birth, the rest a year from
leaving. The simulator's dates never fall on 29 February, so a year later is one
``replace`` away.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, select
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.incidents.desk import incidents
from pipeline.ledger.privacy.retention import periods_of, raise_retention_due
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import IDENTITY, Ledger
from pipeline.packs import load_pack
from pipeline.policy.retention import still_kept
from pipeline.schooltime import at_school
from pipeline.shown import rule_name
from pipeline.simulate import Simulator
from schemas.alerts import Severity
from tests.factory import destroyed, line
from tests.integration.year import KEY, write_lines

pytestmark = pytest.mark.integration
runner = CliRunner()

Item = tuple[str, str, str, str]  # school, UPN, category, kept until (ISO)


def _years(day: date, n: int) -> date:
    assert (day.month, day.day) != (2, 29)
    return day.replace(year=day.year + n)


def truth(simulator: Simulator, as_of: date, kept: bool = False) -> set[Item]:
    """What is due on ``as_of``, from what the simulator did (with ``kept``, what is
    still kept instead: not destroyed, and not past its period or with none that can end
    yet, its kept-until day then empty)."""
    due: set[Item] = set()
    for pupil in simulator.pupils:
        for category, (first, oldest) in pupil.held.items():
            if category in pupil.destroyed:
                continue
            if category == "attendance":
                kept_until: date | None = _years(oldest or first, 6)
            elif category == "sen":
                kept_until = _years(pupil.dob, 31)
            else:
                left = pupil.left_recorded
                kept_until = _years(left, 1) if left else None
            if kept and (kept_until is None or kept_until >= as_of):
                day = kept_until.isoformat() if kept_until else ""
                due.add((pupil.urn, pupil.upn, category, day))
            elif not kept and kept_until is not None and kept_until < as_of:
                due.add((pupil.urn, pupil.upn, category, kept_until.isoformat()))
    return due


class Year:
    def __init__(self, url: str, simulator: Simulator) -> None:
        self.url, self.simulator = url, simulator

    def due(self, as_of: date, *more: str) -> set[Item]:
        args = ["retention", "due", "--as-of", as_of.isoformat(), "--format", "jsonl"]
        done = runner.invoke(app, [*args, "--db", self.url, *more])
        assert done.exit_code == 0, done.stdout + done.stderr
        rows = [orjson.loads(text) for text in done.stdout.splitlines()]
        return {(r["school"], r["upn"], r["category"], r["kept_until"]) for r in rows}

    def keys(self) -> list[str]:
        """Every pupil's pseudonym."""
        ledger = Ledger.open(self.url)
        with ledger.engine.connect() as connection:
            found = connection.execute(select(IDENTITY.c.pupil_key)).scalars().all()
        ledger.engine.dispose()
        return list(found)


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Year]:

    url = f"sqlite:///{tmp_path_factory.mktemp('due')}/year.db"
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    simulator = Simulator(1000, 0.05, seed=4)
    write_lines(ledger, load_pack(), simulator.run())
    ledger.engine.dispose()
    yield Year(url, simulator)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARING_AUDIT_PSEUDONYM_KEY", KEY.hex())


#: Days across the years a record can fall due: attendance kept past its period within
#: the year itself, leavers' records the year after, attendance six years on, SEN
#: 31 years from birth, and a day when everything held has fallen due.
DAYS = [
    date(2026, 7, 31),
    date(2026, 12, 1),
    date(2027, 7, 1),
    date(2031, 9, 1),
    date(2047, 6, 1),
    date(2060, 1, 1),
]


@pytest.mark.parametrize("as_of", DAYS, ids=str)
def test_what_is_still_kept_is_the_simulator_s_truth_on_the_day(year: Year, as_of: date) -> None:
    """What refuses an erasure (a period that still needs the pupil's data)."""
    ledger = Ledger.open(year.url)
    with ledger.engine.connect() as connection:
        upns = {key: upn for key, (upn, _) in Ledger.identities(connection, year.keys()).items()}
        pack = load_pack()
        found = periods_of(connection, lambda _: pack, list(upns), as_of)
    ledger.engine.dispose()
    kept = {
        (p.school, upns[p.pupil], p.category, p.kept_until.isoformat() if p.kept_until else "")
        for p in still_kept(found, as_of)
    }
    assert kept == truth(year.simulator, as_of, kept=True)


@pytest.mark.parametrize("as_of", DAYS, ids=str)
def test_retention_due_is_the_simulator_s_truth_on_the_day(year: Year, as_of: date) -> None:
    expected = truth(year.simulator, as_of)
    assert year.due(as_of) == expected


def test_the_truth_spans_leavers_birth_dated_sen_and_attendance(year: Year) -> None:
    """So the comparisons above are not of empty lists, nor of one kind alone."""
    everything = truth(year.simulator, DAYS[-1])
    kinds = {category for _, _, category, _ in everything}
    assert {"attendance", "sen", "personal"} <= kinds
    assert truth(year.simulator, DAYS[0])  # attendance kept past its period in the year


def test_each_record_falls_due_the_day_after_it_is_kept_until(year: Year) -> None:
    """To the day: on a record's last day it is not listed, the day after it is."""
    everything = sorted(truth(year.simulator, DAYS[-1]), key=lambda item: item[3])
    for kind in ("attendance", "sen", "assessment"):
        school, upn, category, kept = next(i for i in everything if i[2] == kind)
        last = date.fromisoformat(kept)
        assert (school, upn, category, kept) not in year.due(last, "--school", school)
        assert (school, upn, category, kept) in year.due(last + timedelta(1), "--school", school)


def test_one_school_s_list_is_that_school_s_part_alone(year: Year) -> None:
    everything = year.due(DAYS[-1])
    one = year.due(DAYS[-1], "--school", "116001")
    assert one == {item for item in everything if item[0] == "116001"}
    assert one and one != everything


def test_recording_the_destruction_takes_the_record_off_the_list(tmp_path: Path) -> None:

    url = f"sqlite:///{tmp_path}/year.db"
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    simulator = Simulator(500, 0.05, seed=4)
    write_lines(ledger, load_pack(), simulator.run())
    year = Year(url, simulator)
    school, upn, category, _ = sorted(year.due(DAYS[2]))[0]
    gone = destroyed(upn, [category], "2027-06-30T16:00:00+01:00", source=f"/schools/{school}")
    events = tmp_path / "destroyed.jsonl"
    events.write_bytes(line(gone) + b"\n")
    done = runner.invoke(app, ["check", str(events), "--db", url, "--format", "jsonl"])
    assert done.exit_code == 0, done.stdout + done.stderr
    after = year.due(DAYS[2])
    assert not any(item[:3] == (school, upn, category) for item in after)
    assert after == {i for i in truth(simulator, DAYS[2]) if i[:3] != (school, upn, category)}


def test_a_day_that_is_not_a_date_is_refused_by_name(year: Year) -> None:
    done = runner.invoke(app, ["retention", "due", "--as-of", "31/12/2026", "--db", year.url])
    assert done.exit_code != 0 and "Traceback" not in done.stdout + done.stderr
    assert "--as-of '31/12/2026': not a date; give one as YYYY-MM-DD" in done.stderr


def _retention_incidents(connection: Connection, scope: tuple[str, ...] | None = None) -> list[Any]:
    return [i for i in incidents(connection, scope).values() if i.cause.rule == "retention.due"]


def test_records_falling_due_raise_one_low_incident_a_school_and_week(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/year.db"
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    policy = load_pack()
    simulator = Simulator(1000, 0.05, seed=4)
    write_lines(ledger, policy, simulator.run())
    monday = at_school(date(2027, 7, 5), 9)

    def check(now: datetime) -> list[int]:
        return raise_retention_due(ledger, lambda _: policy, [policy], now)

    first = check(monday)
    assert len(first) == 2  # each school of the two has records due, one alert each
    assert check(monday + timedelta(days=4)) == []  # the same week: told already
    with ledger.engine.connect() as connection:
        found = _retention_incidents(connection)
        one_school = _retention_incidents(connection, ("116001",))
    assert sorted(i.cause.school or "" for i in found) == ["116000", "116001"]
    assert all(i.severity is Severity.LOW and not i.breach for i in found)
    assert [i.cause.rule for i in one_school] == ["retention.due"]
    assert rule_name("retention.due") == "records kept past their retention period, to destroy"
    assert len(check(monday + timedelta(days=7))) == 2  # a new week, told again
    with ledger.engine.connect() as connection:
        assert len(_retention_incidents(connection)) == 4
        reasons = [
            reason
            for (body,) in connection.exec_driver_sql("SELECT body FROM alert_outbox")
            for reason in orjson.loads(body)["reasons"]
        ]
    upns = {pupil.upn for pupil in simulator.pupils}
    assert not any(upn in reason for reason in reasons for upn in upns)
