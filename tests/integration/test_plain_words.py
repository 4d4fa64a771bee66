"""The desk and its reports in plain words (issue 31): what a DPO reads on any page names
things as people do, gives times as an English school's clocks show them, and keeps the
machine's values (ids, hashes, offsets, versions) behind a "Technical details"
disclosure."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from pipeline.incidents.desk import incidents
from pipeline.incidents.lifecycle import ActionKind, Risk, Status
from pipeline.ledger.reading.asking import KINDS
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.notices import publish_notice
from pipeline.packs import load_pack
from pipeline.policy.notice import notice_of
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Controller
from pipeline.users import Role, add_user
from schemas.alerts import MERGE_DELAY_MISSED_CAUSE, WITNESS_REFUSED_CAUSE
from schemas.decisions import RuleId
from schemas.events import Channel, LawfulBasis, SpecialCondition
from tests.factory import upn
from tests.integration.breaches import (
    breach_desk,
    ledger_with_breaches,
    ledger_with_every_kind_of_value,
)

pytestmark = pytest.mark.integration

#: Attributes a person reads (a hint in a box, a tooltip); the others are for machines.
READ_ATTRIBUTES = ("placeholder", "title", "aria-label", "alt")

RAW_VALUES = {
    "an event type id": re.compile(r"uk\.school\.[a-z0-9_.]+"),
    "a rule id": re.compile(
        "|".join(
            re.escape(rule) for rule in (*RuleId, WITNESS_REFUSED_CAUSE, MERGE_DELAY_MISSED_CAUSE)
        )
    ),
    "an ISO timestamp in UTC": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z"),
    "a time to the microsecond": re.compile(r"\d\d:\d\d:\d\d\.\d{3,}"),
    "JSON braces": re.compile(r"[{}]"),
    "a lawful basis, Art 9 condition or channel by its id": re.compile(
        "|".join(
            rf"\b{re.escape(value)}\b"
            for value in (*LawfulBasis, *SpecialCondition, *Channel)
            if not value.isalpha()  # "consent", "post": the id is the word
        )
    ),
    "a word of the desk by its id": re.compile(
        "|".join(
            rf"\b{re.escape(value)}\b"
            for value in (*Status, *ActionKind, *Risk, *KINDS)
            if not value.isalpha() or value == "reevaluation"
        )
    ),
}


class ShownText(HTMLParser):
    """The text of a page a person reads, less what is inside a "Technical details"
    disclosure (a ``<details>`` whose ``<summary>`` says so), scripts and styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._details: list[list[str]] = []  # per open <details>: its text so far
        self._technical: list[bool] = []
        self._in_summary = False
        self._summary = ""
        self._hidden = 0  # inside <script> or <style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        elif tag == "details":
            self._technical.append(False)
            self._details.append([])
        elif tag == "summary":
            self._in_summary, self._summary = True, ""
        self._take(" ".join(v or "" for k, v in attrs if k in READ_ATTRIBUTES))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden -= 1
        elif tag == "summary" and self._technical:
            self._in_summary = False
            if "technical details" in self._summary.lower():
                self._technical[-1] = True
        elif tag == "details" and self._details:
            held, technical = self._details.pop(), self._technical.pop()
            if not technical:
                self._take(" ".join(held))

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._in_summary:
            self._summary += data
        self._take(data)

    def _take(self, text: str) -> None:
        if text.strip():
            (self._details[-1] if self._details else self.parts).append(text)

    @classmethod
    def of(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        parser.close()
        return " ".join(parser.parts)


def raw_values_in(html: str) -> list[str]:
    """What the page shows outside its technical details that is a machine's value."""
    shown = ShownText.of(html)
    return [
        f"{what}: {match.group()!r} in ...{shown[max(0, match.start() - 60) : match.end() + 60]}..."
        for what, pattern in RAW_VALUES.items()
        for match in pattern.finditer(shown)
    ]


def test_the_shown_text_leaves_out_the_technical_details_alone() -> None:
    """The check below reads what a person reads: a raw value inside a technical-details
    disclosure is not counted, one anywhere else (in a hint too) is."""
    page = (
        "<p>Sent on Thu 16 Oct 2025, 13:30</p>"
        "<details><summary>Technical details</summary><code>consent.missing</code></details>"
        "<details><summary>More</summary>uk.school.pupil.referred.v1</details>"
        '<input placeholder="2025-10-16T12:30:00Z">'
    )
    assert [found.split(":")[0] for found in raw_values_in(page)] == [
        "an event type id",
        "an ISO timestamp in UTC",
    ]


def _pages(ledger: Ledger) -> dict[str, str]:
    """Every page of the desk and every report, as a DPO (who acted on an incident) sees
    them, by what each is."""
    token = add_user(ledger, "Dana (DPO)", Role.DPO)
    client = TestClient(breach_desk(ledger))
    pages: dict[str, str] = {}

    def page(name: str, path: str, form: dict[str, str] | None = None) -> None:
        answer = client.get(path) if form is None else client.post(path, data=form)
        assert answer.status_code == 200, f"{name}: {answer.status_code}"
        pages[name] = answer.text

    page("sign-in", "/desk/signin")
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    with ledger.engine.connect() as connection:
        ids = sorted(incidents(connection))
    for kind, form in (
        (ActionKind.ACKNOWLEDGE, {}),
        (ActionKind.ASSESS, {"risk": Risk.HIGH_RISK.value, "reasons": "Medical notes."}),
        (ActionKind.REPORT, {"ico_reference": "ICO-1"}),
        (ActionKind.NOTIFY_SUBJECTS, {}),
    ):
        page(f"incident after {kind.value}", f"/desk/incidents/{ids[0]}/{kind.value}", form)
    page("queue", "/desk")
    for incident_id in ids:
        page(f"incident {incident_id}", f"/desk/incidents/{incident_id}")
    with ledger.engine.connect() as connection:
        head = Ledger.head(connection)[0]
    for seq in range(1, head + 1):
        page(f"entry {seq}", f"/desk/entries/{seq}")
    page("search form", "/desk/search")
    for entry_kind in KINDS:
        page(f"search of {entry_kind}", f"/desk/search?kind={entry_kind}&go=1")
    for n in (4, 5, 7, 8):
        page(f"subject-access report of pupil {n}", "/desk/sar", {"upn": upn(n)})
    page("record of processing form", "/desk/ropa")
    page("record of processing", "/desk/ropa?since=2020-01-01&until=2030-01-01&format=html")
    page("privacy notice", "/desk/notice")
    page("notice against practice, none published", "/desk/notice/check?format=html")
    # A notice that names less than the pack: each kind of finding is on the page.
    said = notice_of(load_pack(), Controller(None, "Westfields"))
    said["recipients"].pop("dfe")
    publish_notice(ledger, said, by="Dana", school=None, in_force_from="2020-01-01T00:00:00Z")
    page("notice against practice", "/desk/notice/check?format=html")
    page("record of processing with the notice", "/desk/ropa?format=html")
    return pages


def test_no_page_of_the_desk_or_report_shows_a_raw_id_a_utc_timestamp_or_json(
    sqlite_url: str, policy: Policy
) -> None:
    """Outside the technical details, no page a DPO opens shows an event type or rule
    by its id, a time in UTC as the ledger writes it, or JSON."""
    ledger = ledger_with_every_kind_of_value(sqlite_url, policy)
    pages = _pages(ledger)
    found = {name: raw for name, html in pages.items() if (raw := raw_values_in(html))}
    assert found == {}


def test_the_ledger_of_every_kind_of_value_holds_every_rule_and_event_type(
    sqlite_url: str, policy: Policy
) -> None:
    """The check above sees every rule broken and every event type at least once."""
    from pipeline.ledger.reading.queries import Filters, entries
    from schemas.events import EVENT_TYPES

    ledger = ledger_with_every_kind_of_value(sqlite_url, policy)
    with ledger.engine.connect() as connection:
        found = list(entries(connection, Filters()))
    assert {rule for e in found for rule in e.rules} == set(RuleId)
    assert {e.event_type for e in found if e.event_type} == set(EVENT_TYPES)
    assert any(e.kind == "reevaluation" for e in found)


@pytest.fixture
def dpo_client(sqlite_url: str, policy: Policy) -> tuple[TestClient, Ledger]:
    """A DPO signed in to the desk over :func:`ledger_with_breaches`: entries 1 and 2
    (referrals with no consent) are incident 1, entry 3 (by plain email) incident 3."""
    ledger = ledger_with_breaches(sqlite_url, policy)
    token = add_user(ledger, "Dana (DPO)", Role.DPO)
    client = TestClient(breach_desk(ledger))
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    return client, ledger


def shown_by_id(html: str, element_id: str, tag: str = "") -> str:
    """The content of the element with ``element_id``, up to the first closing tag (of
    ``tag``, if given)."""
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</{tag}', html, re.S)
    assert found is not None, f"no element #{element_id}"
    return found.group(1).strip()


def test_an_entry_page_shows_every_field_the_rules_judged_the_channel_among_them(
    dpo_client: tuple[TestClient, Ledger],
) -> None:
    client, _ = dpo_client
    page = client.get("/desk/entries/3").text
    assert shown_by_id(page, "recipient") == "School Nursing Service"
    assert shown_by_id(page, "categories") == "personal details, medical"
    assert shown_by_id(page, "lawful-basis") == "public task"
    assert shown_by_id(page, "special-condition") == "health or social care"
    assert shown_by_id(page, "channel") == "plain email"
    assert shown_by_id(page, "pupils") == "1"
    assert "When it happened</dt><dd>Tue 21 Jul 2026, 09:30 BST" in page


def test_an_entry_relying_on_consent_shows_its_consent_reference(
    dpo_client: tuple[TestClient, Ledger],
) -> None:
    client, _ = dpo_client
    page = client.get("/desk/entries/1").text
    assert shown_by_id(page, "consent-ref") == "C-1"
    assert shown_by_id(page, "special-condition") == "explicit consent"


def test_each_entry_of_an_incident_links_to_its_page_and_the_page_links_back(
    dpo_client: tuple[TestClient, Ledger],
) -> None:
    client, _ = dpo_client
    incident = client.get("/desk/incidents/1").text
    assert 'href="/desk/entries/1"' in incident and 'href="/desk/entries/2"' in incident
    for seq in (1, 2):
        entry = client.get(f"/desk/entries/{seq}").text
        on = shown_by_id(entry, "incidents", "p")
        assert '<a href="/desk/incidents/1">incident 1</a>' in on
    assert 'id="incidents"' not in client.get("/desk/entries/4").text  # a read: on none


def test_an_entrys_ids_hashes_and_position_are_only_in_its_technical_details(
    dpo_client: tuple[TestClient, Ledger],
) -> None:
    from pipeline.ledger.reading.queries import entry_at

    client, ledger = dpo_client
    with ledger.engine.connect() as connection:
        entry = entry_at(connection, 3)
    assert entry is not None and entry.hash and entry.event_id and entry.policy_version
    page = client.get("/desk/entries/3").text
    technical = shown_by_id(page, "technical")  # up to its summary's end
    assert technical.startswith("<summary>Technical details")
    shown = ShownText.of(page)
    for value in (entry.hash, entry.event_id, entry.policy_version, *entry.pupil_keys):
        assert value in page and value not in shown
    assert "partition" in page and "partition" not in shown
