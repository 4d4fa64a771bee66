"""A new DPO's first morning, in a real browser over what ``make demo`` leaves: the demo
run in a fresh clone, the desk started with the command it prints, and the DPO works an
incident from the queue to the families' letters, the subject-access report and the
record of processing, every page checked by axe-core at a desktop's and a phone's width.

The steps are the issue's (31, "Done when"): sign in, open an incident, reveal its
pupils and find the reveal in the ledger as a read, follow an entry and back, assess,
print a SAR and a RoPA (the print dialog is asked for), and every page without a WCAG 2.2
AA violation at 1280 and 390 pixels. (A trust's DPO narrowing the queue to a school is
walked over a trust's ledger: test_school_scope and test_desk_pages.)"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.transport.broker import free_port
from tests.integration.serving import ARTIFACTS, CHROMIUM, needs_chromium
from tests.integration.test_accessibility import AXE, needs_axe, violations
from tests.integration.test_demo import _when_served, demo_in, fresh_clone, plain_shell
from tests.integration.test_desk_pages import COUNT_PRINTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The desk over the demo's ledger, started as the demo says; its address and the
    DPO token the demo printed."""
    clone = fresh_clone(tmp_path_factory.mktemp("morning") / "clone")
    _, desk, token = demo_in(clone, pupils=60)
    port = free_port()  # the printed port, 8000, may be another test's
    server = plain_shell(f"{desk} --port {port}", clone, start_new_session=True)
    try:
        _when_served(f"http://127.0.0.1:{port}/health", token)
        yield f"http://127.0.0.1:{port}", token
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(30)


class Walk:
    """The pages a DPO passes through, each checked by axe as it is reached."""

    def __init__(self, page: Any, width: str) -> None:
        self.page, self.width = page, width
        self.found: dict[str, list[str]] = {}

    def reached(self, name: str) -> None:
        self.found[name] = violations(self.page)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"morning-{self.width}-{name.replace(' ', '-')}.png"
        self.page.screenshot(path=str(shot), full_page=True)

    def printed(self) -> int:
        return int(self.page.evaluate("window.printed"))


def walk(page: Any, address: str, token: str, width: str) -> Walk:
    from playwright.sync_api import expect

    seen = Walk(page, width)
    page.goto(f"{address}/desk")
    seen.reached("sign-in")
    page.fill("#token", token)
    page.click("button[type=submit]")
    expect(page.locator("#queue")).to_be_visible()
    seen.reached("queue")

    page.locator("#queue tbody tr a").first.click()
    incident = page.url
    expect(page.locator("#status")).to_be_visible()
    seen.reached("incident")

    page.click("#reveal")
    upn = page.locator("#pupils td.upn").first.inner_text()
    assert upn and upn != "erased"
    seen.reached("pupils revealed")
    page.goto(f"{address}/desk/search?kind=read&go=1")
    expect(page.locator("#results")).to_contain_text("revealed the pupils of an incident")
    seen.reached("the reveal in the ledger")

    page.goto(incident)
    page.locator("a[href^='/desk/entries/']").first.click()
    expect(page.locator("#incidents")).to_be_visible()
    seen.reached("entry")
    page.locator(f"#incidents a[href='{incident.removeprefix(address)}']").click()
    assert page.url == incident

    if page.locator("#acknowledge").count():
        page.click("#acknowledge")
        expect(page.locator("#status")).to_have_text("acknowledged")
    page.select_option("#risk", "high_risk")
    page.fill("#reasons", "Medical notes went out without the family's consent.")
    page.click("#assess")
    expect(page.locator("#status")).to_have_text("assessed")
    seen.reached("incident assessed")

    page.goto(f"{address}/desk/search")
    page.fill("input[name=upn]", upn)
    page.locator("form.search button[type=submit]").click()
    page.click("#sar-link")
    expect(page.locator("#rights")).to_be_visible()
    seen.reached("subject-access report")
    page.get_by_role("button", name="Print").click()
    assert seen.printed() == 1

    page.goto(f"{address}/desk/ropa")
    seen.reached("record of processing form")
    page.click("#ropa-button")
    expect(page.locator("#ropa")).to_be_visible()  # the demo's year, not an empty one
    seen.reached("record of processing")
    page.get_by_role("button", name="Print").click()
    assert seen.printed() == 1
    return seen


@needs_chromium
@needs_axe
@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_a_new_dpo_works_the_demos_top_incident_to_the_families_letters_and_the_reports(
    demo_desk: tuple[str, str], width: str
) -> None:
    from playwright.sync_api import sync_playwright

    address, token = demo_desk
    assert AXE.exists()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        pixels = {"desktop": 1280, "phone": 390}[width]
        # bypass_csp: axe is injected; the policy itself is tested in test_desk_pages
        context = browser.new_context(viewport={"width": pixels, "height": 900}, bypass_csp=True)
        context.add_init_script(COUNT_PRINTS)
        blocked: list[str] = []
        page = context.new_page()
        page.on("pageerror", lambda error: blocked.append(str(error)))
        seen = walk(page, address, token, width)
        browser.close()
    assert {name: v for name, v in seen.found.items() if v} == {}
    assert blocked == []
