"""The privacy notice on the desk and in the record of processing, under a register of
two schools: each user sees the notice of their own schools alone (another school's
answers as if it did not exist), the notice against practice is part of the record of
processing, and the notice renders in a real browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.api.app import create_api
from pipeline.cli.main import app
from pipeline.ledger.storage.store import Ledger
from pipeline.packs import load_pack, load_schools
from pipeline.policy.schools import Schools
from pipeline.pseudonym import pseudonymiser
from pipeline.users import Role, add_user
from tests.factory import line, referral, upn
from tests.integration.serving import ARTIFACTS, CHROMIUM, needs_chromium, served, sign_in
from tests.unit.test_schools import NORTHAM, WESTFIELDS, register

pytestmark = pytest.mark.integration
runner = CliRunner()
KEY = "ab" * 32
ENV = {"SHARING_AUDIT_PSEUDONYM_KEY": KEY}


@pytest.fixture
def registered(tmp_path: Path) -> tuple[Ledger, Schools, dict[str, str]]:
    """Westfields referring a pupil to its LA and to a tutor its pack does not know;
    Northam to its LA; both decided under the register."""
    path = register(tmp_path)
    events = tmp_path / "events.jsonl"
    sent = [
        referral(recipient="la:850", source=WESTFIELDS, pupils=[{"upn": upn(1)}]),
        referral(recipient="agency:private-tutoring", source=WESTFIELDS, pupils=[{"upn": upn(1)}]),
        referral(recipient="la:852", source=NORTHAM, pupils=[{"upn": upn(2)}]),
    ]
    events.write_bytes(b"\n".join(line(e) for e in sent) + b"\n")
    url = f"sqlite:///{tmp_path}/ledger.db"
    env = {**ENV, "SHARING_AUDIT_SCHOOLS": str(path), "SHARING_AUDIT_DATABASE_URL": url}
    done = runner.invoke(app, ["check", str(events), "--db", url], env=env)
    assert done.exit_code == 0, done.output
    return Ledger.open(url), load_schools(str(path)), env


def desk(ledger: Ledger, schools: Schools, *serves: str) -> TestClient:
    client = TestClient(
        create_api(
            ledger, policy=load_pack(), pseudonym=pseudonymiser(bytes.fromhex(KEY)), schools=schools
        )
    )
    token = add_user(ledger, f"dpo-{id(client)}", Role.DPO, schools=serves)
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    return client


def test_a_dpo_of_one_school_is_shown_its_notice_and_no_other(
    registered: tuple[Ledger, Schools, dict[str, str]],
) -> None:
    ledger, schools, _ = registered
    client = desk(ledger, schools, "116234")
    page = client.get("/desk/notice")
    assert page.status_code == 200
    assert "Westfields Junior School: how we use and share pupil information" in page.text
    assert "LA 850" in page.text and "<script" not in page.text
    other = client.get("/desk/notice?school=135000")
    assert other.status_code == 404
    assert "Northam" not in other.text


def test_a_dpo_of_the_trust_chooses_among_its_schools(
    registered: tuple[Ledger, Schools, dict[str, str]],
) -> None:
    ledger, schools, _ = registered
    client = desk(ledger, schools)
    chooser = client.get("/desk/notice")
    assert "/desk/notice?school=116234" in chooser.text
    assert "/desk/notice?school=135000" in chooser.text
    northam = client.get("/desk/notice?school=135000")
    assert "Northam Primary: how we use" in northam.text and "LA 852" in northam.text


def test_the_notice_against_practice_is_part_of_the_record_of_processing(
    registered: tuple[Ledger, Schools, dict[str, str]],
) -> None:
    ledger, schools, env = registered
    published = runner.invoke(
        app, ["notice", "publish", "--school", "116234", "--from", "2020-01-01"], env=env
    )
    assert published.exit_code == 0, published.output
    client = desk(ledger, schools)
    record = client.get("/desk/ropa?since=2020-01-01&until=2030-01-01&format=json").json()
    parts = {s["school"]: s for s in record["notice"]["schools"]}
    assert [u["recipient"] for u in parts["116234"]["unnamed_recipients"]] == [
        "agency:private-tutoring"
    ]
    assert parts["135000"]["latest"] is None  # Northam has published none
    printed = client.get("/desk/ropa?since=2020-01-01&until=2030-01-01&format=html").text
    assert "The privacy notice against practice" in printed
    assert "agency:private-tutoring" in printed
    check = client.get("/desk/notice/check?since=2020-01-01&until=2030-01-01&format=csv")
    assert "recipient not in the notice,agency:private-tutoring" in check.text
    entry = client.get(f"/desk/entries/{parts['116234']['latest']['seq']}")
    assert entry.status_code == 200 and "privacy notice published" in entry.text


def test_a_dpo_of_one_school_compares_only_its_own(
    registered: tuple[Ledger, Schools, dict[str, str]],
) -> None:
    ledger, schools, _ = registered
    client = desk(ledger, schools, "135000")
    report = client.get("/desk/notice/check?since=2020-01-01&format=json").json()
    assert [s["school"] for s in report["schools"]] == ["135000"]
    assert report["schools"][0]["unnamed_recipients"] == []


def test_a_period_that_is_not_a_date_is_said_on_the_form(
    registered: tuple[Ledger, Schools, dict[str, str]],
) -> None:
    ledger, schools, _ = registered
    response = desk(ledger, schools).get("/desk/notice/check?since=last-year&format=html")
    assert response.status_code == 422
    assert "From &#39;last-year&#39;: give a date" in response.text


def test_the_command_line_asks_which_school_when_the_register_has_several(
    registered: tuple[Ledger, Schools, dict[str, str]],
) -> None:
    _, _, env = registered
    result = runner.invoke(app, ["notice"], env=env)
    assert result.exit_code == 2
    assert "give --school: the register of schools has 2 schools" in result.output


@needs_chromium
def test_the_notice_renders_on_the_desk_in_a_real_browser(
    registered: tuple[Ledger, Schools, dict[str, str]],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    ledger, schools, _ = registered
    app_ = create_api(
        ledger, policy=load_pack(), pseudonym=pseudonymiser(bytes.fromhex(KEY)), schools=schools
    )
    token = add_user(ledger, "Dana (DPO)", Role.DPO, schools=["116234"])
    with served(app_) as address, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, address, token)
        page.click("text=Privacy notice")
        expect(page.locator("h1")).to_have_text(
            "Westfields Junior School: how we use and share pupil information"
        )
        shared = page.locator("#who-we-share-with h3")
        expect(shared).to_have_count(len(load_pack().spec.recipients))
        expect(page.locator("#what tbody tr")).to_have_count(len(load_pack().spec.categories))
        expect(page.locator("#how-long")).to_contain_text("31 years")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "notice.png"), full_page=True)
        page.emulate_media(media="print")
        expect(page.locator("nav.screen")).to_be_hidden()
        browser.close()
