"""The breach desk's pages in a real browser: headless Chromium (Debian's), driven by
Playwright with the system browser. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from pipeline.policy.pack import Policy
from pipeline.transport.kafka import KafkaConfig
from pipeline.users import Role, add_user
from tests.factory import upn
from tests.integration.breaches import breach_desk, ledger_with_breaches
from tests.integration.serving import ARTIFACTS, CHROMIUM, needs_chromium, served, sign_in
from tests.integration.test_awaiting_receipts import a_port_nobody_answers, produced_with_no_worker

pytestmark = pytest.mark.integration


@pytest.fixture
def desk(sqlite_url: str, policy: Policy) -> Iterator[tuple[str, str]]:
    """The app served on a free port; its address and a DPO's token."""
    ledger = ledger_with_breaches(sqlite_url, policy)
    token = add_user(ledger, "Dana (DPO)", Role.DPO)
    with served(breach_desk(ledger)) as address:
        yield address, token


@pytest.mark.slow  # a browser
@needs_chromium
def test_the_dpo_signs_in_acknowledges_and_assesses_the_top_incident(
    desk: tuple[str, str],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    address, token = desk
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{address}/desk")
        expect(page).to_have_url(f"{address}/desk/signin")
        page.fill("#token", token)
        page.click("button[type=submit]")
        expect(page.locator("#queue")).to_be_visible()
        rows = page.locator("#queue tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.first.locator("td").nth(6)).to_have_text("2")  # events, not alerts
        # The clock ticks (the server writes hours and minutes, the script adds seconds):
        # its script is allowed by the pages' Content-Security-Policy.
        expect(rows.first.locator(".clock")).to_have_text(re.compile(r"\d+h \d\dm \d\ds"))
        page.screenshot(path=str(ARTIFACTS / "desk-queue.png"), full_page=True)

        top = rows.first.get_attribute("data-incident")
        rows.first.locator("a").click()
        expect(page.locator("#status")).to_have_text("open")
        expect(page.locator("#cause")).to_contain_text("no consent on record")
        page.click("#acknowledge")
        expect(page.locator("#status")).to_have_text("acknowledged")
        page.select_option("#risk", "high_risk")
        page.fill("#reasons", "Medical notes went to the school nursing service without consent.")
        page.click("#assess")
        expect(page.locator("#status")).to_have_text("assessed")
        expect(page.locator("ol.history li")).to_have_count(2)
        page.screenshot(path=str(ARTIFACTS / "desk-incident.png"), full_page=True)

        page.click("text=Back to the queue")
        expect(page.locator(f"#queue tr[data-incident='{top}'] .status")).to_have_text("assessed")
        browser.close()
    assert (ARTIFACTS / "desk-queue.png").stat().st_size > 0


#: Counts the print dialogs a page asks for, in place of opening one.
COUNT_PRINTS = "window.printed = 0; window.print = () => { window.printed += 1; };"


@pytest.mark.slow  # a browser
@needs_chromium
def test_print_on_the_subject_access_and_processing_reports_calls_the_print_dialog(
    desk: tuple[str, str],
) -> None:
    """Under the desk's Content-Security-Policy (no inline script, so no javascript:
    link), the reports' Print button opens the browser's print dialog."""
    from playwright.sync_api import expect, sync_playwright

    from tests.factory import upn

    address, token = desk
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        page.add_init_script(COUNT_PRINTS)
        blocked: list[str] = []
        page.on(
            "console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None
        )
        sign_in(page, address, token)
        expect(page.locator("#queue")).to_be_visible()

        page.goto(f"{address}/desk/search")
        page.fill("input[name=upn]", upn(1))
        page.locator("form.search button[type=submit]").click()
        page.click("#sar-link")
        page.get_by_role("button", name="Print").click()
        assert page.evaluate("window.printed") == 1

        page.goto(f"{address}/desk/ropa?since=2020-01-01&until=2030-01-01&format=html")
        page.get_by_role("button", name="Print").click()
        assert page.evaluate("window.printed") == 1
        browser.close()
    assert blocked == []


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.ADMIN])
def test_a_form_posted_by_a_role_that_may_not_act_is_refused_and_changes_nothing(
    sqlite_url: str, policy: Policy, role: Role
) -> None:
    from fastapi.testclient import TestClient

    from pipeline.incidents.desk import incidents

    ledger = ledger_with_breaches(sqlite_url, policy)
    token = add_user(ledger, f"{role.value}-user", role)
    client = TestClient(breach_desk(ledger))
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    with ledger.engine.connect() as connection:
        incident_id = next(iter(incidents(connection)))
    response = client.post(f"/desk/incidents/{incident_id}/acknowledge", follow_redirects=False)
    assert response.status_code == 403
    assert "may not act on incidents" in response.text
    with ledger.engine.connect() as connection:
        assert incidents(connection)[incident_id].history == ()


# -- records awaiting a receipt (issue 30) ---------------------------------------------------


def signed_in_queue(sqlite_url: str, policy: Policy, schools: tuple[str, ...] = ()) -> str:
    """The queue page as a DPO signed in sees it (one serving ``schools`` alone, if given)."""
    from fastapi.testclient import TestClient

    ledger = ledger_with_breaches(sqlite_url, policy)
    token = add_user(ledger, "Dana (DPO)", Role.DPO, schools=schools)
    client = TestClient(breach_desk(ledger))
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    page = client.get("/desk")
    assert page.status_code == 200
    return str(page.text)


@pytest.mark.slow  # a broker
def test_the_queue_shows_the_records_awaiting_a_receipt_and_the_oldest_ones_age(
    sqlite_url: str, policy: Policy, kafka: KafkaConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    now_ms = int(time.time() * 1000)
    produced_with_no_worker(kafka, [now_ms - 600_000, now_ms])
    monkeypatch.setenv("SHARING_AUDIT_BROKER", kafka.bootstrap)
    text = signed_in_queue(sqlite_url, policy)
    assert re.search(
        r'id="awaiting"[^>]*>[^<]*2 records await a receipt, the oldest for 10 min', text
    )


def test_a_desk_that_knows_no_broker_says_it_cannot_tell_what_awaits_a_receipt(
    sqlite_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHARING_AUDIT_BROKER", raising=False)
    text = signed_in_queue(sqlite_url, policy)
    assert re.search(r'id="awaiting"[^>]*>[^<]*cannot tell without a broker', text)


def test_a_desk_whose_broker_does_not_answer_says_so(
    sqlite_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"127.0.0.1:{a_port_nobody_answers()}"
    monkeypatch.setenv("SHARING_AUDIT_BROKER", nowhere)
    text = signed_in_queue(sqlite_url, policy)
    assert re.search(rf'id="awaiting"[^>]*>[^<]*no broker answers at {nowhere}', text)


def test_a_dpo_of_one_school_is_not_shown_what_every_school_has_awaiting(
    sqlite_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARING_AUDIT_BROKER", f"127.0.0.1:{a_port_nobody_answers()}")
    text = signed_in_queue(sqlite_url, policy, schools=("100000",))
    assert re.search(r'id="awaiting"[^>]*>[^<]*shown to those who serve every school', text)
    assert "no broker answers" not in text


# -- the pupils an incident concerned (issue 31) ------------------------------------------------


@pytest.mark.slow  # a browser
@needs_chromium
def test_the_dpo_reveals_an_incidents_pupils_finds_the_read_in_the_ledger_and_downloads_them(
    sqlite_url: str, policy: Policy
) -> None:
    import csv

    from playwright.sync_api import expect, sync_playwright

    from pipeline.incidents.desk import REVEAL_ACTION
    from pipeline.ledger.reading.queries import Filters, entries
    from tests.factory import upn

    ledger = ledger_with_breaches(sqlite_url, policy)
    token = add_user(ledger, "Dana (DPO)", Role.DPO)
    ARTIFACTS.mkdir(exist_ok=True)
    with served(breach_desk(ledger)) as address, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        blocked: list[str] = []
        page.on(
            "console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None
        )
        sign_in(page, address, token)
        expect(page.locator("#queue tbody tr")).to_have_count(2)
        page.select_option("select[name=severity]", "high")
        page.click("#filters button[type=submit]")
        expect(page).to_have_url(re.compile(r"severity=high"))
        page.screenshot(path=str(ARTIFACTS / "desk-queue-filters.png"), full_page=True)

        page.get_by_role("link", name="no consent on record").click()
        incident_id = int(page.url.rsplit("/", 1)[1])
        expect(page.locator("#pupils")).to_have_count(0)  # pseudonyms until asked
        page.click("#reveal")
        pupils = page.locator("#pupils tbody tr")
        expect(pupils).to_have_count(2)
        expect(page.locator("#pupils")).to_contain_text(upn(1))
        expect(page.locator("#pupils")).to_contain_text("9 Mar 2014")
        page.screenshot(path=str(ARTIFACTS / "desk-pupils-revealed.png"), full_page=True)

        # The reveal is a read in the ledger, naming the incident, who, and how many.
        with ledger.engine.connect() as connection:
            (read,) = [
                e
                for e in entries(connection, Filters(kind="read"))
                if (e.details or {}).get("action") == REVEAL_ACTION
            ]
        assert (read.details or {})["incident"] == incident_id
        assert (read.details or {})["by"] == "Dana (DPO)" and (read.details or {})["pupils"] == 2
        # ... and the ledger's search lists it as an auditor would find it.
        page.goto(f"{address}/desk/search?kind=read&go=1")
        expect(page.locator(f"tr[data-seq='{read.seq}']")).to_contain_text(
            "Dana (DPO) revealed the pupils of an incident"
        )

        page.goto(f"{address}/desk/incidents/{incident_id}")
        with page.expect_download() as downloading:
            page.click("#families-csv")
        download = downloading.value
        assert download.suggested_filename == f"incident-{incident_id}-families.csv"
        with open(download.path(), encoding="utf-8") as written:
            rows = list(csv.DictReader(written))
        assert sorted(r["upn"] for r in rows) == sorted([upn(1), upn(2)])
        browser.close()
    assert blocked == []


# -- one configuration, built once (issue 33) ------------------------------------------------


def test_no_request_reads_the_settings_again_once_the_app_is_built(
    sqlite_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue (with its broker figure), a checkpoint, a search exported with proofs and
    a subject-access report, each served with the settings read at start-up: an
    environment that can no longer be read (a setting gone wrong under a running desk)
    changes nothing."""
    from fastapi.testclient import TestClient

    from pipeline.settings import Settings

    ledger = ledger_with_breaches(sqlite_url, policy)
    token = add_user(ledger, "Dana (DPO)", Role.DPO)
    client = TestClient(breach_desk(ledger))

    def unreadable(*_: object, **__: object) -> None:
        raise AssertionError("the settings were read during a request")

    monkeypatch.setattr(Settings, "__init__", unreadable)
    auth = {"Authorization": f"Bearer {token}"}
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    assert client.get("/desk").status_code == 200
    assert client.get("/log/checkpoint", headers=auth).status_code in (200, 404)
    exported = client.get("/entries/export", params={"format": "jsonl"}, headers=auth)
    assert exported.status_code == 200
    assert client.post("/pupils/sar", json={"upn": upn(1)}, headers=auth).status_code == 200
