"""The record of processing of a trust's ledger: for one school or all of them, counting
records too malformed to name a recipient apart from the recipients, the desk's form
opening on the latest school year with sharing, an empty period saying so; and the
subject-access report naming the school its settings give."""

from __future__ import annotations

import html
import uuid
from datetime import date
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.api.app import create_api
from pipeline.cli.main import app
from pipeline.ledger.storage.store import Ledger
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


def desk_page(client: TestClient, trust: Ledger, path: str) -> str:
    token = add_user(trust, f"dpo-{uuid.uuid4().hex[:8]}", Role.DPO)
    client.post("/desk/signin", data={"token": token})
    page = client.get(path)
    assert page.status_code == 200, page.text
    return html.unescape(page.text)


def test_the_desks_form_opens_on_the_latest_school_year_with_sharing(
    client: TestClient, trust: Ledger
) -> None:
    """The trust's events are all in 2025-26 (July 2026): a DPO opening the form in the
    autumn after is shown that year, not the new one with nothing in it yet."""
    page = desk_page(client, trust, "/desk/ropa")
    assert 'value="2025-09-01"' in page and 'value="2026-09-01"' in page
    assert "The ledger's sharing events run from 21 Jul 2026 to 21 Jul 2026." in page


def test_a_desk_with_no_sharing_opens_the_form_on_this_school_year(
    sqlite_url: str, policy: Policy
) -> None:
    empty = ledger_with(sqlite_url, [])
    key = bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"])
    client = TestClient(create_api(empty, policy=policy, pseudonym=pseudonymiser(key)))
    page = desk_page(client, empty, "/desk/ropa")
    start, end = school_year(date.today())
    assert f'value="{start.isoformat()}"' in page and f'value="{end.isoformat()}"' in page
    assert "The ledger holds no sharing events yet." in page


def test_an_empty_year_on_the_desk_says_so_and_when_the_sharing_ran(
    client: TestClient, trust: Ledger
) -> None:
    page = desk_page(client, trust, "/desk/ropa?since=2026-09-01&until=2027-09-01&format=html")
    assert '<dd id="ropa-period">1 Sep 2026 to 31 Aug 2027</dd>' in page
    assert (
        "No sharing recorded between 1 Sep 2026 and 31 Aug 2027; "
        "the ledger's sharing events run from 21 Jul 2026 to 21 Jul 2026."
    ) in page
    assert "2026-08-31T23:00:00" not in page  # the period's start as the ledger keeps it


def test_the_command_line_says_when_a_period_has_no_sharing(trust: Ledger, sqlite_url: str) -> None:
    args = ["report", "ropa", "--db", sqlite_url, "--since", "2026-09-01", "--until", "2027-09-01"]
    done = runner.invoke(app, [*args, "--format", "csv"], env=ENV)
    assert done.exit_code == 0, done.output
    assert "No sharing recorded between 1 Sep 2026 and 31 Aug 2027; " in done.stderr
    assert len(done.stdout.splitlines()) == 1  # the header alone
    year = runner.invoke(app, [*args[:5], "2025-09-01", "--until", "2026-09-01"], env=ENV)
    assert year.exit_code == 0 and "No sharing recorded" not in year.stderr
    assert "1 Sep 2025 to 31 Aug 2026" in year.stdout


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
