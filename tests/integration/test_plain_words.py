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
from pipeline.incidents.lifecycle import ActionKind, Risk
from pipeline.ledger.store import Ledger
from pipeline.policy.pack import Policy
from pipeline.users import Role, add_user
from schemas.alerts import MERGE_DELAY_MISSED_CAUSE, WITNESS_REFUSED_CAUSE
from schemas.decisions import RuleId
from tests.factory import upn
from tests.integration.breaches import breach_desk, ledger_with_every_kind_of_value

pytestmark = pytest.mark.integration

#: Attributes a person reads (a hint in a box, a tooltip); the others are for machines.
READ_ATTRIBUTES = ("placeholder", "title", "aria-label", "alt")

RAW_VALUES = {
    "an event type id": re.compile(r"uk\.school\.[a-z0-9_.]+"),
    "a rule id": re.compile(
        "|".join(
            re.escape(rule)
            for rule in (*RuleId, WITNESS_REFUSED_CAUSE, MERGE_DELAY_MISSED_CAUSE)
        )
    ),
    "an ISO timestamp in UTC": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z"),
    "a time to the microsecond": re.compile(r"\d\d:\d\d:\d\d\.\d{3,}"),
    "JSON braces": re.compile(r"[{}]"),
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
    pages = {"sign-in": client.get("/desk/signin").text}
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    with ledger.engine.connect() as connection:
        ids = sorted(incidents(connection))
        head = Ledger.head(connection)[0]
    for kind, data in (
        (ActionKind.ACKNOWLEDGE, {}),
        (ActionKind.ASSESS, {"risk": Risk.HIGH_RISK.value, "reasons": "Medical notes."}),
        (ActionKind.REPORT, {"ico_reference": "ICO-1"}),
        (ActionKind.NOTIFY_SUBJECTS, {}),
    ):
        client.post(f"/desk/incidents/{ids[0]}/{kind.value}", data=data)
    pages["queue"] = client.get("/desk").text
    for incident_id in ids:
        pages[f"incident {incident_id}"] = client.get(f"/desk/incidents/{incident_id}").text
    for seq in range(1, head + 1):
        pages[f"entry {seq}"] = client.get(f"/desk/entries/{seq}").text
    pages["search form"] = client.get("/desk/search").text
    for kind in ("decision", "reevaluation", "read", "incident_action", "user_action"):
        pages[f"search of {kind}"] = client.get(f"/desk/search?kind={kind}&go=1").text
    for n in (4, 5, 7, 8):
        answer = client.post("/desk/sar", data={"upn": upn(n)})
        pages[f"subject-access report of pupil {n}"] = answer.text
    pages["record of processing form"] = client.get("/desk/ropa").text
    ropa = "/desk/ropa?since=2020-01-01&until=2030-01-01&format=html"
    pages["record of processing"] = client.get(ropa).text
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
    from pipeline.ledger.queries import Filters, entries
    from schemas.events import EVENT_TYPES

    ledger = ledger_with_every_kind_of_value(sqlite_url, policy)
    with ledger.engine.connect() as connection:
        found = list(entries(connection, Filters()))
    assert {rule for e in found for rule in e.rules} == set(RuleId)
    assert {e.event_type for e in found if e.event_type} == set(EVENT_TYPES)
    assert any(e.kind == "reevaluation" for e in found)
