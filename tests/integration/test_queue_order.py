"""The DPO's queue as the database orders, narrows, counts and pages it: least time left
on the ICO clock first (overdue at the top), stopped clocks and reviews last, the gravest
first at equal time left, then by id; closed incidents only when asked for; a reader of
some schools sees theirs alone. The rows are written straight into the incident
projection (how they are kept on append is tested beside the projection); what is
checked here is the queue's reading of them, against an order worked out here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.incidents.desk import QueueFilter, queue
from pipeline.incidents.lifecycle import ActionKind, Status
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.incident_projection import ALERTS, INCIDENTS
from pipeline.ledger.storage.store import Ledger, utc_text
from pipeline.users import Role, add_user
from schemas.alerts import Severity
from tests.integration.breaches import breach_desk

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
GRAVITY = {"high": 2, "medium": 1, "low": 0}
STOPS = {"report", "notify_subjects", "close"}
STATUS_OF = {
    None: "open",
    "acknowledge": "acknowledged",
    "assess": "assessed",
    "report": "reported",
    "notify_subjects": "subjects_notified",
    "close": "closed",
}
SCHOOLS = ("116234", "135000", None)


def row(
    number: int,
    hours_ago: float = 1,
    severity: str = "high",
    breach: bool = True,
    last: str | None = None,
    school: str | None = "116234",
    now: datetime = NOW,
) -> dict[str, Any]:
    """An incident row as the projection keeps it, detected ``hours_ago`` before ``now``."""
    return {
        "id": number,
        "cause": f"cause {number}",
        "rule": "channel.not_permitted",
        "recipient": "agency:school-nursing",
        "day": "2026-12-07",
        "school": school,
        "severity": severity,
        "breach": breach,
        "detected_at": utc_text(now - timedelta(hours=hours_ago)),
        "alerts": 1,
        "events": 1,
        "last_alert": number,
        "actions": 0 if last is None else 1,
        "last_action": last,
        "last_action_seq": None,
        "risk": None,
    }


def kept(ledger: Ledger, rows: list[dict[str, Any]]) -> None:
    """The projection holding ``rows`` and nothing else (each with an alert of its own)."""
    with ledger.engine.begin() as connection:
        connection.execute(delete(ALERTS))
        connection.execute(delete(INCIDENTS))
        if rows:
            connection.execute(INCIDENTS.insert(), rows)
            alerts = [{"seq": r["id"], "incident": r["id"], "event_id": None} for r in rows]
            connection.execute(ALERTS.insert(), alerts)


def expected(
    rows: list[dict[str, Any]], asked: QueueFilter, scope: tuple[str, ...] | None
) -> tuple[list[int], int]:
    """The queue worked out here: the rows it admits, in its order, and the overdue."""

    def admitted(r: dict[str, Any]) -> bool:
        status = STATUS_OF[r["last_action"]]
        wanted_status = (
            status == asked.status.value
            if asked.status is not None
            else (asked.with_closed or status != "closed")
        )
        return (
            wanted_status
            and (asked.severity is None or r["severity"] == asked.severity.value)
            and (asked.school is None or r["school"] == asked.school)
            and (scope is None or r["school"] in scope)
        )

    def running(r: dict[str, Any]) -> bool:
        return bool(r["breach"]) and r["last_action"] not in STOPS

    def key(r: dict[str, Any]) -> tuple[bool, str, int, int]:
        return (
            not running(r),
            r["detected_at"] if running(r) else "",
            -GRAVITY[r["severity"]],
            r["id"],
        )

    chosen = sorted(filter(admitted, rows), key=key)
    cutoff = utc_text(NOW - timedelta(hours=72))
    overdue = sum(1 for r in chosen if running(r) and r["detected_at"] < cutoff)
    return [int(r["id"]) for r in chosen], overdue


def listed(
    ledger: Ledger,
    asked: QueueFilter,
    scope: tuple[str, ...] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[int], int, int]:
    """The ids the queue lists (in its order), how many it holds and how many overdue."""
    with ledger.engine.connect() as connection:
        found = queue(connection, scope, asked, NOW, limit, offset)
    return [i for i, _ in found.listed], found.total, found.overdue


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    opened = Ledger.open(db_url)
    schema.upgrade(opened.engine)
    yield opened
    opened.engine.dispose()


def test_least_time_left_comes_first_and_stopped_clocks_and_reviews_last(ledger: Ledger) -> None:
    kept(
        ledger,
        [
            row(1, hours_ago=10, last="report"),
            row(2, hours_ago=80),  # overdue
            row(3, hours_ago=5),
            row(4, hours_ago=70, breach=False),  # a review: no clock
            row(5, hours_ago=20, last="assess"),
        ],
    )
    ids, total, overdue = listed(ledger, QueueFilter())
    assert ids[:3] == [2, 5, 3]
    assert sorted(ids[3:]) == [1, 4]
    assert (total, overdue) == (5, 1)


def test_at_equal_time_left_the_gravest_comes_first_then_the_lowest_id(ledger: Ledger) -> None:
    kept(
        ledger,
        [
            row(1, severity="medium"),
            row(2, severity="high"),
            row(3, severity="low"),
            row(4, severity="high"),
        ],
    )
    assert listed(ledger, QueueFilter())[0] == [2, 4, 1, 3]


def test_a_closed_incident_is_left_out_unless_asked_for(ledger: Ledger) -> None:
    kept(ledger, [row(1, last="close"), row(2)])
    assert listed(ledger, QueueFilter())[:2] == ([2], 1)
    assert listed(ledger, QueueFilter(status=Status.CLOSED))[0] == [1]
    assert sorted(listed(ledger, QueueFilter(with_closed=True))[0]) == [1, 2]


def test_narrowed_to_a_status_the_queue_shows_that_status_alone(ledger: Ledger) -> None:
    kept(ledger, [row(1, last="acknowledge"), row(2), row(3, last="assess")])
    assert listed(ledger, QueueFilter(status=Status.ACKNOWLEDGED))[0] == [1]
    assert listed(ledger, QueueFilter(status=Status.OPEN))[0] == [2]


def test_narrowed_to_a_school_and_a_severity_the_queue_shows_those_alone(ledger: Ledger) -> None:
    kept(
        ledger,
        [
            row(1, school="135000", severity="medium"),
            row(2, school="116234", severity="medium"),
            row(3, school="135000", severity="high"),
        ],
    )
    asked = QueueFilter(school="135000", severity=Severity.MEDIUM)
    assert listed(ledger, asked)[0] == [1]


def test_a_reader_of_one_school_asking_for_another_sees_nothing(ledger: Ledger) -> None:
    kept(ledger, [row(1, school="135000"), row(2, school="116234"), row(3, school=None)])
    assert listed(ledger, QueueFilter(school="135000"), scope=("116234",))[:2] == ([], 0)
    assert listed(ledger, QueueFilter(), scope=("116234",))[0] == [2]
    assert listed(ledger, QueueFilter(), scope=())[:2] == ([], 0)


def test_pages_follow_on_across_the_running_clocks_and_the_stopped_ones(ledger: Ledger) -> None:
    rows = [row(n, hours_ago=n) for n in range(1, 8)] + [
        row(n, last="report") for n in range(8, 12)
    ]
    kept(ledger, rows)
    whole = listed(ledger, QueueFilter())[0]
    pages = [listed(ledger, QueueFilter(), limit=3, offset=o)[0] for o in range(0, 12, 3)]
    assert [i for page in pages for i in page] == whole
    assert pages[2] == whole[6:9]  # one running clock, then two stopped
    assert listed(ledger, QueueFilter(), limit=3, offset=30)[:2] == ([], 11)


incident_rows = st.lists(
    st.fixed_dictionaries(
        {
            "hours_ago": st.sampled_from([1, 1, 5, 71.9, 72.1, 100]),
            "severity": st.sampled_from(["high", "medium", "low"]),
            "breach": st.booleans(),
            "last": st.sampled_from([None, *(k.value for k in ActionKind)]),
            "school": st.sampled_from(SCHOOLS),
        }
    ),
    min_size=3,
    max_size=25,
)
asks = st.builds(
    QueueFilter,
    school=st.sampled_from([None, "116234", "135000"]),
    status=st.sampled_from([None, *Status]),
    severity=st.sampled_from([None, *Severity]),
    with_closed=st.booleans(),
)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    drawn=incident_rows,
    asked=asks,
    scope=st.sampled_from([None, ("116234",), ("116234", "135000")]),
    size=st.integers(1, 7),
)
def test_any_queue_read_page_by_page_is_the_queue_worked_out_here(
    ledger: Ledger,
    drawn: list[dict[str, Any]],
    asked: QueueFilter,
    scope: tuple[str, ...] | None,
    size: int,
) -> None:
    rows = [row(n, **fields) for n, fields in enumerate(drawn, start=1)]
    kept(ledger, rows)
    # Every incident, then the queue as asked: narrowed, few rows are left to order.
    for ask, seen_by in ((QueueFilter(with_closed=True), None), (asked, scope)):
        ids, overdue = expected(rows, ask, seen_by)
        assert listed(ledger, ask, seen_by) == (ids, len(ids), overdue)
        pages = range(0, len(ids) + 1, size)
        paged = [listed(ledger, ask, seen_by, size, offset)[0] for offset in pages]
        assert [i for page in paged for i in page] == ids


# -- a page at a time: the desk, the API and the command -----------------------------------

#: 120 incidents of one school: 30 past their deadline, 80 with time left, 10 reported.
MANY = 120


@pytest.fixture
def many(sqlite_url: str) -> Iterator[Ledger]:
    opened = Ledger.open(sqlite_url)
    schema.upgrade(opened.engine)
    now = datetime.now(UTC)
    kept(
        opened,
        [row(n, hours_ago=72 + n, now=now) for n in range(1, 31)]
        + [row(n, hours_ago=n / 2, now=now, severity="medium") for n in range(31, 111)]
        + [row(n, last="report", now=now) for n in range(111, 121)],
    )
    yield opened
    opened.engine.dispose()


def in_order(ledger: Ledger) -> list[int]:
    ids, _, _ = listed(ledger, QueueFilter())
    return ids


def signed_in(ledger: Ledger) -> TestClient:
    token = add_user(ledger, "Dana (DPO)", Role.DPO)
    client = TestClient(breach_desk(ledger))
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def shown(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-incident="(\d+)"', page)]


def test_the_desk_shows_fifty_incidents_and_says_how_many_and_how_many_are_overdue(
    many: Ledger,
) -> None:
    page = signed_in(many).get("/desk").text
    assert shown(page) == in_order(many)[:50]
    assert "120 incidents open, <strong" in page and "30 past the ICO deadline" in page
    assert "Showing 1 to 50, least time left first." in page
    assert '<a href="/desk?page=2" rel="next">Next 50 →</a>' in page
    assert 'rel="prev"' not in page and "Page 1 of 3" in page


def test_the_desks_pages_follow_on_and_keep_the_filters_asked(many: Ledger) -> None:
    desk = signed_in(many)
    pages = [shown(desk.get(f"/desk?page={n}").text) for n in (1, 2, 3)]
    assert [i for page in pages for i in page] == in_order(many)
    assert [len(page) for page in pages] == [50, 50, 20]
    medium = desk.get("/desk?severity=medium&page=2").text
    assert "80 incidents match" in medium and "Showing 51 to 80" in medium
    assert 'href="/desk?severity=medium" rel="prev"' in medium and 'rel="next"' not in medium


def test_a_page_past_the_end_of_the_queue_says_so_and_links_to_the_first(many: Ledger) -> None:
    page = signed_in(many).get("/desk?page=9")
    assert page.status_code == 200
    assert "Page 9 is past the end: the queue has 3 pages." in page.text
    assert '<a href="/desk">Go to the first page</a>' in page.text and shown(page.text) == []


def test_a_page_number_that_is_not_one_is_refused_in_the_desks_layout(many: Ledger) -> None:
    desk = signed_in(many)
    for asked in ("0", "-1", "two", "99999999999"):
        answer = desk.get(f"/desk?page={asked}")
        assert answer.status_code == 422, asked
        assert '<a href="/desk">Breach desk</a>' in answer.text


def test_the_api_lists_a_page_with_the_total_and_a_link_to_the_next(many: Ledger) -> None:
    api = signed_in(many)
    first = api.get("/incidents", params={"limit": 50})
    assert [i["id"] for i in first.json()] == in_order(many)[:50]
    assert first.headers["X-Total-Count"] == "120"
    assert (
        first.headers["Link"] == '</incidents?include_closed=false&limit=50&offset=50>; rel="next"'
    )
    last = api.get("/incidents", params={"limit": 50, "offset": 100})
    assert [i["id"] for i in last.json()] == in_order(many)[100:]
    assert "Link" not in last.headers
    assert len(api.get("/incidents").json()) == 100  # the default page
    assert api.get("/incidents", params={"limit": 1001}).status_code == 422


def test_the_command_lists_a_page_and_says_where_the_next_is(many: Ledger, sqlite_url: str) -> None:
    ran = CliRunner().invoke(
        app,
        ["incidents", "list", "--db", sqlite_url, "--limit", "10", "--page", "2"],
        env={"COLUMNS": "200"},
    )
    assert ran.exit_code == 0, ran.output
    ids = [int(i) for i in re.findall(r"^\s*(\d+)\s", ran.output, re.M)]
    assert ids == in_order(many)[10:20]
    assert (
        "11-20 of 120 open incidents; 30 past the ICO deadline (--page 3 for the next)"
        in ran.output
    )
    beyond = CliRunner().invoke(app, ["incidents", "list", "--db", sqlite_url, "--page", "9"])
    assert beyond.exit_code != 0 and "page 9 is past the end" in beyond.output
