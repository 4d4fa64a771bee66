"""The auditors' pages in a real browser (Debian's headless Chromium, via Playwright):
search for a pupil, open an entry, download the CSV, print the subject-access report.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest

from pipeline.api.app import create_api
from pipeline.ledger.reading.queries import Filters, entries
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Controller
from pipeline.users import Role, add_user
from tests.integration.serving import ARTIFACTS, CHROMIUM, needs_chromium, served
from tests.integration.year import Year, ledger_of_year, pseudonym

pytestmark = pytest.mark.integration


@pytest.fixture
def year(sqlite_url: str, policy: Policy) -> Year:
    return ledger_of_year(sqlite_url, policy)


@pytest.fixture
def desk(year: Year, policy: Policy) -> Iterator[tuple[str, str]]:
    token = add_user(year.ledger, "Dana (DPO)", Role.DPO)
    with served(create_api(year.ledger, policy=policy, pseudonym=pseudonym)) as address:
        yield address, token


def a_referred_pupil(year: Year) -> str:
    """A pupil with at least one referral, so the search has something to open."""
    referral = next(line.event for line in year.lines if "referred" in line.event["type"])
    return str(referral["data"]["pupils"][0]["upn"])


@pytest.mark.slow  # a browser
@needs_chromium
def test_the_dpo_searches_a_pupil_opens_an_entry_downloads_csv_and_prints_the_sar(
    desk: tuple[str, str], year: Year
) -> None:
    from playwright.sync_api import expect, sync_playwright

    address, token = desk
    upn = a_referred_pupil(year)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        page = context.new_page()
        page.goto(f"{address}/desk/search")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.goto(f"{address}/desk/search")
        page.fill("input[name=upn]", upn)
        page.click("#search-button")
        rows = page.locator("#results tbody tr")
        expect(rows.first).to_be_visible()
        shown = rows.count()
        assert shown >= 1
        page.screenshot(path=str(ARTIFACTS / "audit-search.png"), full_page=True)

        rows.first.locator("a").click()
        expect(page.locator("#explanation")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "audit-entry.png"), full_page=True)
        page.go_back()

        with page.expect_download() as download:
            page.click("#export-csv")
        text = (download.value.path()).read_text()
        exported = list(csv.DictReader(io.StringIO(text)))
        assert all(year.pseudonym(upn) in row["pupil_keys"] for row in exported)
        # the export also holds the searches for this pupil made since: they name them too
        assert len([r for r in exported if r["kind"] != "read"]) == shown

        page.click("#sar-link")
        expect(page.locator("#sar-upn")).to_have_text(upn)
        expect(page.locator("#disclosures tbody tr").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "audit-sar.png"), full_page=True)
        browser.close()
    with year.ledger.engine.connect() as connection:
        actions = [(e.details or {})["action"] for e in entries(connection, Filters(kind="read"))]
    # (going back may or may not search again, as the browser pleases)
    assert actions[0] == "search"
    assert [a for a in actions if a != "search"] == ["open", "export", "sar"]
    for name in ("audit-search.png", "audit-entry.png", "audit-sar.png"):
        assert (ARTIFACTS / name).stat().st_size > 0


@pytest.mark.slow  # a browser
@needs_chromium
def test_the_dpo_prints_a_subject_access_report_a_parent_can_read_and_the_years_record(
    year: Year, policy: Policy
) -> None:
    """After a year like the demo's (2025-26), in the autumn after: the SAR opens with the
    school's name, address and DPO, and prints its proof on pages of its own; the record
    of processing opens on 2025-26, and an empty year says why it is empty."""
    from playwright.sync_api import expect, sync_playwright

    school = Controller(
        None,
        "Westfields Junior School",
        "Westfields Road\nEastleigh\nHampshire SO50 1AA",
        "Mrs A Patel, dpo@westfields.example, 023 8061 2345",
    )
    token = add_user(year.ledger, "Dana (DPO)", Role.DPO)
    app = create_api(year.ledger, policy=policy, pseudonym=pseudonym, school=school)
    ARTIFACTS.mkdir(exist_ok=True)
    with served(app) as address, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(f"{address}/desk/signin")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.goto(f"{address}/desk/search")
        page.fill("input[name=upn]", a_referred_pupil(year))
        page.click("#search-button")
        page.click("#sar-link")
        expect(page.locator("#controller")).to_contain_text("Westfields Junior School")
        expect(page.locator("#controller")).to_contain_text("dpo@westfields.example")
        expect(page.locator("#purposes tbody tr").first).to_be_visible()
        expect(page.locator("#complain")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "sar-for-a-parent.png"), full_page=True)
        page.emulate_media(media="print")
        appendix = page.locator("#appendix")
        assert appendix.evaluate("e => getComputedStyle(e).breakBefore") == "page"
        page.pdf(path=str(ARTIFACTS / "sar-for-a-parent.pdf"), format="A4")
        page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
        page.screenshot(path=str(ARTIFACTS / "sar-printed.png"), full_page=True)
        page.emulate_media(media="screen")

        page.goto(f"{address}/desk/ropa")
        expect(page.locator("input[name=since]")).to_have_value("2025-09-01")
        expect(page.locator("input[name=until]")).to_have_value("2026-09-01")
        page.screenshot(path=str(ARTIFACTS / "ropa-form.png"), full_page=True)
        page.click("#ropa-button")
        expect(page.locator("#ropa-period")).to_have_text("1 Sep 2025 to 31 Aug 2026")
        expect(page.locator("#ropa tbody tr").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "ropa-year.png"), full_page=True)

        page.goto(f"{address}/desk/ropa?since=2026-09-01&until=2027-09-01&format=html")
        expect(page.locator("#nothing-recorded")).to_contain_text(
            "No sharing recorded between 1 Sep 2026 and 31 Aug 2027; the ledger's sharing "
            "events run from"
        )
        page.screenshot(path=str(ARTIFACTS / "ropa-empty-year.png"), full_page=True)
        browser.close()
