"""The record of processing of a trust's ledger: for one school or all of them, counting
records too malformed to name a recipient apart from the recipients, and the desk's form
opening on the current school year; and the subject-access report naming the school its
settings give."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.api.app import create_api
from pipeline.cli.main import app
from pipeline.ledger.store import Ledger
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.schooltime import school_year
from pipeline.users import Role, add_user
from tests.factory import line, referral, transfer, upn
from tests.integration.test_verifiable_log import ENV, ledger_with

pytestmark = pytest.mark.integration
runner = CliRunner()
WESTFIELDS, NORTHAM = "116234", "135000"


@pytest.fixture
def trust(sqlite_url: str) -> Ledger:
    """Three referrals from Westfields, two transfers from Northam, one malformed record."""
    raws = [
        line(referral(source=f"/schools/{WESTFIELDS}", pupils=[{"upn": upn(n)}])) for n in range(3)
    ]
    raws += [line(transfer(source=f"/schools/{NORTHAM}", pupils=[{"upn": upn(n)}])) for n in (7, 8)]
    malformed = referral(source=f"/schools/{WESTFIELDS}")
    del malformed["data"]["recipient"]
    return ledger_with(sqlite_url, [*raws, line(malformed)])


@pytest.fixture
def client(trust: Ledger, policy: Policy) -> TestClient:
    key = bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"])
    return TestClient(create_api(trust, policy=policy, pseudonym=pseudonymiser(key)))


def ropa(client: TestClient, trust: Ledger, **params: str) -> Any:
    token = add_user(trust, f"dpo-{uuid.uuid4().hex[:8]}", Role.DPO)
    answer = client.get(
        "/reports/ropa", params=params, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_record_of_one_school_counts_its_events_alone(
    client: TestClient, trust: Ledger
) -> None:
    ours, theirs = ropa(client, trust, school=WESTFIELDS), ropa(client, trust, school=NORTHAM)
    assert [r["event_type"] for r in ours["rows"]] == ["uk.school.pupil.referred.v1"]
    assert [r["event_type"] for r in theirs["rows"]] == ["uk.school.pupil.transferred.v1"]
    assert (ours["totals"]["events"], theirs["totals"]["events"]) == (3, 2)
    assert ours["school"] == WESTFIELDS


def test_the_trusts_record_counts_every_school(client: TestClient, trust: Ledger) -> None:
    assert ropa(client, trust)["totals"]["events"] == 5


def test_a_record_too_malformed_to_name_a_recipient_is_counted_apart(
    client: TestClient, trust: Ledger
) -> None:
    report = ropa(client, trust)
    assert report["totals"]["unreadable"] == 1
    assert all(row["recipient"] for row in report["rows"])
    assert "(not given)" not in str(report)


def test_a_school_not_named_by_a_urn_is_refused(client: TestClient, trust: Ledger) -> None:
    token = add_user(trust, "dpo-x", Role.DPO)
    answer = client.get(
        "/reports/ropa",
        params={"school": "Westfields"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 422


def test_the_command_line_gives_one_schools_record(trust: Ledger, sqlite_url: str) -> None:
    done = runner.invoke(
        app, ["report", "ropa", "--db", sqlite_url, "--school", NORTHAM, "-f", "json"], env=ENV
    )
    assert done.exit_code == 0, done.output
    assert '"school":"135000"' in done.stdout.replace(" ", "")
    wrong = runner.invoke(app, ["report", "ropa", "--db", sqlite_url, "--school", "13500"], env=ENV)
    assert wrong.exit_code == 2 and "six digits" in wrong.stderr


def test_the_desks_form_opens_on_the_current_school_year(client: TestClient, trust: Ledger) -> None:
    token = add_user(trust, "dpo-page", Role.DPO)
    client.post("/desk/signin", data={"token": token})
    page = client.get("/desk/ropa").text
    start, end = school_year(date.today())
    assert f'value="{start.isoformat()}"' in page and f'value="{end.isoformat()}"' in page


def test_the_command_lines_subject_access_report_names_the_school_its_settings_give(
    trust: Ledger, sqlite_url: str
) -> None:
    school = {
        "SHARING_AUDIT_SCHOOL_NAME": "Westfields Junior School",
        "SHARING_AUDIT_SCHOOL_ADDRESS": "Westfields Road, Eastleigh SO50 1AA",
        "SHARING_AUDIT_SCHOOL_DPO_CONTACT": "dpo@westfields.example",
    }
    args = ["report", "sar", "--db", sqlite_url, "--pupil", upn(0)]
    done = runner.invoke(app, args, env={**ENV, **school})
    assert done.exit_code == 0, done.output
    page = done.stdout
    for given in school.values():
        assert given in page
    assert "(URN 116234)" in page and "0303 123 1113" in page
    assert page.index("How to complain") < page.index("For an auditor or anyone checking")
    as_json = runner.invoke(app, [*args, "--format", "json"], env={**ENV, **school})
    (named,) = orjson.loads(as_json.stdout)["controllers"]
    assert (named["urn"], named["name"], named["missing"]) == (
        "116234",
        school["SHARING_AUDIT_SCHOOL_NAME"],
        [],
    )


@pytest.mark.parametrize(
    ("day", "year"),
    [
        (date(2026, 12, 1), (date(2026, 9, 1), date(2027, 9, 1))),
        (date(2027, 8, 31), (date(2026, 9, 1), date(2027, 9, 1))),
        (date(2027, 9, 1), (date(2027, 9, 1), date(2028, 9, 1))),
    ],
)
def test_a_school_year_runs_from_one_september_to_the_next(
    day: date, year: tuple[date, date]
) -> None:
    assert school_year(day) == year
