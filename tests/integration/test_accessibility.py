"""Every page of the desk meets WCAG 2.2 AA as axe-core checks it, on a desktop and on a
phone's width, and the DPO's work can be done by keyboard alone.

axe-core is an implementation we did not write (Deque's, from npm: tests/axe, installed
by ``make install``); it runs in headless Chromium over the pages as served. The pages
allow no script but their own, so the browser context that injects axe bypasses the
Content-Security-Policy: the policy itself is tested elsewhere (test_desk_pages)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.engine import Position
from pipeline.ledger.privacy.erasure import erase
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.notices import publish_notice
from pipeline.ledger.writing.pupils import finder
from pipeline.packs import pack_text
from pipeline.policy.notice import notice_of
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Controller
from pipeline.pseudonym import pseudonymiser
from pipeline.users import Role, add_user
from tests.factory import census, left, line, upn
from tests.integration.breaches import KEY, breach_desk, ledger_with_breaches
from tests.integration.serving import ARTIFACTS, CHROMIUM, needs_chromium, served, sign_in

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AXE = Path(__file__).resolve().parents[1] / "axe" / "node_modules" / "axe-core" / "axe.min.js"
needs_axe = pytest.mark.skipif(
    not AXE.exists(), reason="no axe-core: npm is needed (make install runs npm ci in tests/axe)"
)
#: The rules of WCAG 2.0, 2.1 and 2.2 at levels A and AA, as axe tags them.
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
WIDTHS = {"desktop": 1280, "phone": 390}
#: The erasure made before the desk is served: its statement is printed again by reference.
ERASURE_SEQ = 8


def _stricter() -> dict[str, Any]:
    """An edited pack, as the policy page uploads it: without the school nursing service,
    so that the desk's referrals to it would be decided otherwise."""
    document = yaml.safe_load(pack_text()[0])
    del document["recipients"]["agency:school-nursing"]
    return {
        "name": "stricter.yaml",
        "mimeType": "text/yaml",
        "buffer": yaml.safe_dump(document).encode(),
    }


STRICTER = _stricter()
NOT_A_PACK = {"name": "notes.yaml", "mimeType": "text/yaml", "buffer": b"pack: notes\n"}


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('a11y')}/ledger.db"
    ledger = ledger_with_breaches(url, policy)
    # Pupil 1 left: a year on, the records the school shared of them are due to destroy.
    gone = left(upn(1), left_on="2026-06-01", time="2026-06-01T15:00:00+01:00")
    # Pupil 40 left in 2018, every period of their records ended: erased already.
    long_ago = [
        census(pupils=[{"upn": upn(40)}], time="2018-01-18T10:00:00+00:00"),
        left(upn(40), left_on="2018-07-20", time="2018-07-20T15:00:00+01:00"),
    ]
    events = [gone, *long_ago]
    LedgerWriter(ledger, policy, pseudonymiser(KEY)).write(
        [(line(e), Position.line("a11y", n)) for n, e in enumerate(events, 1)]
    )
    erased = erase(ledger, finder(ledger)(upn(40)), by="Dana", reason="asked", rule="request")
    assert erased.seq == ERASURE_SEQ
    # A notice in force since 2020, so that the notice against practice has one to compare.
    publish_notice(
        ledger,
        notice_of(policy, Controller(None, "Westfields Junior School")),
        by="Dana",
        school=None,
        in_force_from="2020-01-01T00:00:00.000000Z",
    )
    token = add_user(ledger, "Dana (DPO)", Role.DPO)
    with served(breach_desk(ledger)) as address:
        yield address, token


def violations(page: Any) -> list[str]:
    """What axe finds against WCAG 2.2 AA on the page as it stands, one line each."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
        ".violations.map(v => `${v.id} (${v.impact}): ${v.help} at `"
        " + v.nodes.map(n => n.target.join(' ')).join(', '))",
        WCAG_AA,
    )
    return list(found)


def signed_in(browser: Any, address: str, token: str, width: int) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, address, token)
    return page


def submit(page: Any, selector: str) -> None:
    """Press a button that submits a form, and wait for the page it leads to: a check run
    while the old document is being replaced finds no document at all."""
    with page.expect_navigation():
        page.click(selector)


def visit_the_policy_page(page: Any, address: str) -> Iterator[str]:
    """The policy page's form, a candidate's diff and what-if, and its refusal."""
    page.goto(f"{address}/desk/policy")
    yield "try a change of policy"
    submit(page, "#try-policy")
    yield "the policy in force tried"
    page.set_input_files("#candidate", files=[STRICTER])
    submit(page, "#try-policy")
    yield "a stricter policy tried"
    page.set_input_files("#candidate", files=[NOT_A_PACK])
    submit(page, "#try-policy")
    yield "a policy with problems tried"


def visit_notice_pages(page: Any, address: str) -> Iterator[str]:
    """The privacy notice's pages, naming each."""
    page.goto(f"{address}/desk/notice")
    yield "privacy notice"
    page.goto(f"{address}/desk/notice/check")
    yield "notice against practice form"
    submit(page, "#notice-check-button")
    yield "notice against practice"
    page.goto(f"{address}/desk/notice/check?since=last-year&format=html")
    yield "notice against practice with an error"


def visit_every_page(page: Any, address: str) -> Iterator[str]:
    """Go to each page of the desk in turn, naming it."""
    page.goto(f"{address}/desk")
    yield "queue"
    page.goto(f"{address}/desk?severity=high")
    yield "queue narrowed"
    page.goto(f"{address}/desk")
    with page.expect_navigation():
        page.locator("#queue tbody tr a").first.click()
    yield "incident"
    submit(page, "#reveal")
    yield "incident with its pupils revealed"
    if page.locator("#acknowledge").count():
        submit(page, "#acknowledge")
    page.fill("#reasons", "no risk chosen")
    page.click("#assess")  # no risk chosen: the browser refuses it, in the page
    yield "incident with an error"
    page.goto(f"{address}/desk/entries/1")
    yield "entry"
    page.goto(f"{address}/desk/search")
    yield "search"
    page.fill("input[name=upn]", upn(1))
    submit(page, "form.search button[type=submit]")
    yield "search results"
    submit(page, "#sar-link")
    yield "subject-access report"
    page.goto(f"{address}/desk/ropa")
    yield "record of processing form"
    page.goto(f"{address}/desk/ropa?since=2020-01-01&until=2030-01-01&format=html")
    yield "record of processing"
    yield from visit_notice_pages(page, address)
    page.goto(f"{address}/desk/retention?as_of=2027-09-01")
    yield "records to destroy"
    page.goto(f"{address}/desk/retention?as_of=next-week")
    yield "records to destroy with an error"
    yield from visit_the_policy_page(page, address)
    page.goto(f"{address}/desk/incidents/999")
    yield "an unknown incident"
    page.goto(f"{address}/desk/pupils/erase")
    yield "erase a pupil"
    page.fill("#upn", upn(2))
    page.fill("#reason", "the family asked")
    submit(page, "#next")
    yield "erasing: what cannot be undone"
    submit(page, "#erase")
    yield "erasing refused, with the reasons"
    page.goto(f"{address}/desk/search")
    page.fill("input[name=erasure]", str(ERASURE_SEQ))
    submit(page, "#erasure-statement")
    yield "erasure statement"


@needs_chromium
@needs_axe
@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_no_page_of_the_desk_breaks_a_wcag_22_aa_rule_axe_checks(
    desk: tuple[str, str], width: str
) -> None:
    from playwright.sync_api import sync_playwright

    address, token = desk
    found: dict[str, list[str]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        signin = browser.new_context(
            viewport={"width": WIDTHS[width], "height": 900}, bypass_csp=True
        )
        page = signin.new_page()
        page.goto(f"{address}/desk/signin")
        found["sign-in"] = violations(page)
        page = signed_in(browser, address, token, WIDTHS[width])
        for name in visit_every_page(page, address):
            found[name] = violations(page)
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / f"a11y-{width}-{name.replace(' ', '-')}.png"
            page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert {name: v for name, v in found.items() if v} == {}


@needs_chromium
@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_no_page_of_the_desk_scrolls_sideways_a_wide_table_scrolls_in_its_own_box(
    desk: tuple[str, str], width: str
) -> None:
    """WCAG 1.4.10 (reflow): at 390 CSS pixels, as at 1280, the page itself is no wider
    than the screen; a table too wide for it scrolls inside a region that takes the
    keyboard's focus."""
    from playwright.sync_api import sync_playwright

    address, token = desk
    wider: dict[str, int] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = signed_in(browser, address, token, WIDTHS[width])
        for name in visit_every_page(page, address):
            overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
            if overflow > 0:
                wider[name] = overflow
        browser.close()
    assert wider == {}


def focused(page: Any) -> str:
    return str(page.evaluate("document.activeElement.id || document.activeElement.textContent"))


def tab_to(page: Any, wanted: str, presses: int = 40) -> None:
    """Press Tab until the element with id or text ``wanted`` has the focus."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if focused(page).strip() == wanted:
            return
    raise AssertionError(f"{presses} presses of Tab never reached {wanted!r}")


@needs_chromium
def test_a_dpo_works_an_incident_by_keyboard_alone_and_sees_where_the_focus_is(
    desk: tuple[str, str],
) -> None:
    """WCAG 2.1.1 and 2.4.7: sign in, open the top incident, acknowledge and assess it
    with the keyboard alone; each control shows its focus."""
    from playwright.sync_api import expect, sync_playwright

    address, token = desk
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{address}/desk/signin")
        tab_to(page, "token")
        page.keyboard.type(token)
        page.keyboard.press("Enter")
        expect(page.locator("#queue")).to_be_visible()
        top = page.locator("#queue tbody tr a").first
        link_text = top.inner_text()
        tab_to(page, link_text)
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", "the focused link shows no outline"
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_be_visible()
        if page.locator("#acknowledge").count():
            tab_to(page, "acknowledge")
            page.keyboard.press("Enter")
            expect(page.locator("#status")).to_have_text("acknowledged")
        tab_to(page, "risk")
        page.keyboard.press("ArrowDown")  # from "Choose…" to the first answer
        page.keyboard.press("ArrowDown")
        tab_to(page, "reasons")
        page.keyboard.type("Medical notes went without consent.")
        tab_to(page, "assess")
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_have_text("assessed")
        browser.close()
