"""The auditors' API: search with a cursor, entries explained, streamed exports, roles,
and a read entry for every path that reads pupil-level data."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from pipeline.api.app import create_api
from pipeline.ledger.log.checkpoints import sign_if_grown
from pipeline.ledger.reading.queries import Filters, count, entries
from pipeline.ledger.records.entry import Entry
from pipeline.ledger.storage.store import Ledger
from pipeline.policy.pack import Policy
from pipeline.transparency.note import Signer
from pipeline.users import Role, add_user
from tests.integration.routes import http_routes
from tests.integration.year import Year, ledger_of_year, pseudonym

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def year(sqlite_url: str, policy: Policy) -> Year:
    return ledger_of_year(sqlite_url, policy)


@pytest.fixture
def tokens(year: Year) -> dict[Role, str]:
    return {role: add_user(year.ledger, f"{role.value}-user", role) for role in Role}


@pytest.fixture
def client(year: Year, policy: Policy) -> TestClient:
    return TestClient(create_api(year.ledger, policy=policy, pseudonym=pseudonym))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def reads(ledger: Ledger) -> list[Entry]:
    with ledger.engine.connect() as connection:
        return list(entries(connection, Filters(kind="read")))


def details_of(entry: Entry) -> Mapping[str, Any]:
    return entry.details or {}


def a_census_pupil(year: Year) -> str:
    """A pupil in a census return who was never transferred."""
    transferred = {
        p["upn"]
        for line in year.lines
        if "transferred" in line.event["type"]
        for p in line.event["data"].get("pupils", [])
    }
    census = next(line.event for line in year.lines if "census" in line.event["type"])
    pupil: str = next(p["upn"] for p in census["data"]["pupils"] if p["upn"] not in transferred)
    return pupil


def test_a_pupil_search_returns_every_entry_naming_the_pupil_and_no_other(
    client: TestClient, tokens: dict[Role, str], year: Year
) -> None:
    upn = a_census_pupil(year)
    page = client.post(
        "/entries/search", json={"upn": upn, "limit": 500}, headers=auth(tokens[Role.AUDITOR])
    ).json()
    expected_ids = {
        line.event["id"]
        for line in year.lines
        if upn in [p.get("upn") for p in line.event["data"].get("pupils", [])]
        or line.event["data"].get("upn") == upn
    }
    assert {e["event_id"] for e in page["entries"] if e["kind"] == "decision"} == expected_ids
    assert all(year.pseudonym(upn) in e["pupil_keys"] for e in page["entries"])


def test_pages_follow_the_cursor_without_gaps_or_repeats(
    client: TestClient, tokens: dict[Role, str], year: Year
) -> None:
    seen: list[int] = []
    after: int | None = 0
    while after is not None:
        page = client.get(
            "/entries",
            params={"type": "referred", "after": after, "limit": 100},
            headers=auth(tokens[Role.AUDITOR]),
        ).json()
        seen.extend(e["seq"] for e in page["entries"])
        after = page["next_after"]
    referrals = {line.event["id"] for line in year.lines if "referred" in line.event["type"]}
    with year.ledger.engine.connect() as connection:
        stored = count(connection, Filters(event_type="uk.school.pupil.referred.v1"))
    assert seen == sorted(set(seen))
    assert len(seen) == stored >= len(referrals)


def test_filters_by_category_rule_and_decision_match_whole_values(
    client: TestClient, tokens: dict[Role, str]
) -> None:
    found = client.get(
        "/entries",
        params={"rule": "channel.not_permitted", "limit": 500},
        headers=auth(tokens[Role.AUDITOR]),
    ).json()["entries"]
    assert found and all("channel.not_permitted" in e["rules"] for e in found)
    medical = client.get(
        "/entries",
        params={"category": "medical", "decision": "breach"},
        headers=auth(tokens[Role.AUDITOR]),
    ).json()["entries"]
    assert medical and all(
        "medical" in e["categories"] and e["decision"] == "breach" for e in medical
    )
    assert (
        client.get(
            "/entries", params={"category": "medic"}, headers=auth(tokens[Role.AUDITOR])
        ).json()["entries"]
        == []
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"upn": "A123"}, "upn: not a valid UPN"),
        ({"since": "last tuesday"}, "since 'last tuesday': give a date"),
        ({"until": "2026-07-21T09:00:00"}, "needs a UTC offset"),
        ({"decision": "maybe"}, "decision 'maybe': one of allowed"),
        ({"type": "left-ish"}, "type 'left-ish': give one of"),
    ],
)
def test_a_bad_filter_gets_422_naming_it(
    client: TestClient, tokens: dict[Role, str], params: dict[str, str], message: str
) -> None:
    response = client.post("/entries/search", json=params, headers=auth(tokens[Role.AUDITOR]))
    assert response.status_code == 422
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    "path", ["/entries", "/entries/export", "/desk/search", "/desk/search/export", "/desk/sar"]
)
@pytest.mark.parametrize("name", ["upn", "UPN"])
def test_a_upn_in_a_url_is_refused_and_answers_nothing(
    client: TestClient, tokens: dict[Role, str], year: Year, path: str, name: str
) -> None:
    _signed_in(client, tokens[Role.DPO])
    before = len(reads(year.ledger))
    response = client.get(
        path,
        params={name: a_census_pupil(year)},
        headers=auth(tokens[Role.DPO]),
        follow_redirects=False,
    )
    assert response.status_code == 400
    assert "never" in response.text and a_census_pupil(year) not in response.text
    assert len(reads(year.ledger)) == before


def test_the_search_form_posts_the_upn_and_shows_the_pupil_by_pseudonym(
    client: TestClient, tokens: dict[Role, str], year: Year
) -> None:
    upn = a_census_pupil(year)
    _signed_in(client, tokens[Role.DPO])
    posted = client.post("/desk/search", data={"upn": upn}, follow_redirects=False)
    assert posted.status_code == 303
    where = posted.headers["location"]
    assert upn not in where and f"pupil={year.pseudonym(upn)}" in where
    page = client.get(where)
    assert page.status_code == 200 and upn not in page.text
    assert details_of(reads(year.ledger)[-1])["filters"] == {"pupil_key": year.pseudonym(upn)}


def test_an_opened_entry_explains_itself_and_links_its_reevaluations(
    client: TestClient, tokens: dict[Role, str]
) -> None:
    reevaluation = client.get(
        "/entries", params={"kind": "reevaluation", "limit": 1}, headers=auth(tokens[Role.AUDITOR])
    ).json()["entries"][0]
    first = reevaluation["refers_to"]
    opened = client.get(f"/entries/{first}", headers=auth(tokens[Role.AUDITOR])).json()
    assert reevaluation["seq"] in [e["seq"] for e in opened["referred_by"]]
    assert opened["decided_by_current_policy"] is True
    later = client.get(f"/entries/{reevaluation['seq']}", headers=auth(tokens[Role.AUDITOR]))
    body = later.json()
    assert body["refers_to"]["seq"] == first
    assert [x["rule"] for x in body["explanation"]] == body["entry"]["rules"]
    assert all(x["reason"] for x in body["explanation"])


def test_opening_an_unknown_entry_is_404(client: TestClient, tokens: dict[Role, str]) -> None:
    assert client.get("/entries/99999999", headers=auth(tokens[Role.AUDITOR])).status_code == 404


@pytest.mark.parametrize("form", ["csv", "jsonl"])
def test_an_export_streams_every_matching_entry_with_its_count(
    client: TestClient, tokens: dict[Role, str], year: Year, form: str
) -> None:
    with client.stream(
        "GET",
        "/entries/export",
        params={"format": form, "type": "census"},
        headers=auth(tokens[Role.AUDITOR]),
    ) as response:
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())
    if form == "csv":
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        seqs = [int(r["seq"]) for r in rows]
        assert all(r["event_type"] == "uk.school.census.submitted.v1" for r in rows)
    else:
        rows = [orjson.loads(line) for line in body.splitlines()]
        seqs = [int(r["seq"]) for r in rows if "seq" in r]  # the last: their checkpoint
    assert int(response.headers["x-entry-count"]) == len(seqs) > 0
    assert seqs == sorted(seqs)


def test_an_export_after_a_seq_counts_and_records_what_it_streams(
    client: TestClient, tokens: dict[Role, str], year: Year
) -> None:
    """The count said (the header, and the read recorded: what the reader was given)
    is of the entries after the cursor, as streamed, not of all that match."""
    params: dict[str, str | int] = {"format": "csv", "type": "census"}
    with client.stream(
        "GET", "/entries/export", params=params, headers=auth(tokens[Role.AUDITOR])
    ) as response:
        every = [int(r["seq"]) for r in csv.DictReader(io.StringIO(response.read().decode()))]
    after = every[len(every) // 2]
    params["after"] = after
    with client.stream(
        "GET", "/entries/export", params=params, headers=auth(tokens[Role.AUDITOR])
    ) as response:
        rows = list(csv.DictReader(io.StringIO(response.read().decode())))
    expected = [seq for seq in every if seq > after]
    assert [int(r["seq"]) for r in rows] == expected
    assert int(response.headers["x-entry-count"]) == len(expected)
    assert details_of(reads(year.ledger)[-1])["returned"] == len(expected)


def test_an_export_records_its_read_before_the_first_byte(
    client: TestClient, tokens: dict[Role, str], year: Year
) -> None:
    before = len(reads(year.ledger))
    with client.stream(
        "GET", "/entries/export", params={"decision": "breach"}, headers=auth(tokens[Role.AUDITOR])
    ) as response:
        assert len(reads(year.ledger)) == before + 1
        next(response.iter_bytes())
    read = details_of(reads(year.ledger)[-1])
    assert read["action"] == "export" and read["filters"] == {"decision": "breach"}
    assert read["by"] == "auditor-user" and read["returned"] == int(
        response.headers["x-entry-count"]
    )


def test_a_pupil_search_is_recorded_by_pseudonym_and_found_among_their_readers(
    client: TestClient, tokens: dict[Role, str], year: Year
) -> None:
    upn = a_census_pupil(year)
    client.post("/entries/search", json={"upn": upn}, headers=auth(tokens[Role.AUDITOR]))
    client.get("/entries/export", params={"type": "census"}, headers=auth(tokens[Role.DPO]))
    client.get("/entries", params={"type": "transferred"}, headers=auth(tokens[Role.DPO]))
    read = reads(year.ledger)[0]
    assert details_of(read)["filters"] == {"pupil_key": year.pseudonym(upn)}
    assert upn not in orjson.dumps(read.as_dict()).decode()
    readers = client.post(
        "/pupils/readers", json={"upn": upn}, headers=auth(tokens[Role.AUDITOR])
    ).json()
    assert [(r["details"]["action"], r["details"]["by"]) for r in readers] == [
        ("search", "auditor-user"),
        ("export", "dpo-user"),
    ]  # the census export held the pupil's row; the search of transfers did not


SAR_PATHS = ("/pupils/sar", "/desk/sar")


def _signed_in(client: TestClient, token: str) -> TestClient:
    client.cookies.clear()
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    return client


@pytest.mark.parametrize("path", SAR_PATHS)
@pytest.mark.parametrize(
    ("role", "status"), [(Role.DPO, 200), (Role.ADMIN, 200), (Role.AUDITOR, 403)]
)
def test_only_the_dpo_and_admins_may_run_a_subject_access_report(
    client: TestClient, tokens: dict[Role, str], year: Year, path: str, role: Role, status: int
) -> None:
    params = {"upn": a_census_pupil(year)}
    if path.startswith("/desk"):
        response = _signed_in(client, tokens[role]).post(path, data=params)
    else:
        response = client.post(path, json=params, headers=auth(tokens[role]))
    assert response.status_code == status


READ_ROUTES: dict[tuple[str, str], dict[str, str | None]] = {
    ("GET", "/entries"): {},
    ("GET", "/entries/export"): {"format": "jsonl"},
    ("GET", "/entries/{seq}"): {},
    ("POST", "/entries/search"): {"upn": None},
    ("POST", "/entries/export"): {"upn": None, "format": "jsonl"},
    ("POST", "/pupils/readers"): {"upn": None},
    ("GET", "/reports/ropa"): {"format": "csv"},
}


def _read(
    client: TestClient, method: str, path: str, params: dict[str, str], token: str | None
) -> Any:
    headers = auth(token) if token else {}
    url = path.replace("{seq}", "1")
    if method == "POST":
        return client.post(url, json=params, headers=headers)
    return client.get(url, params=params, headers=headers)


@pytest.mark.parametrize(("method", "path"), sorted(READ_ROUTES))
@pytest.mark.parametrize("role", [Role.AUDITOR, Role.DPO, Role.ADMIN])
def test_every_reader_may_search_open_export_and_build_the_record(
    client: TestClient, tokens: dict[Role, str], year: Year, method: str, path: str, role: Role
) -> None:
    params = {k: v or a_census_pupil(year) for k, v in READ_ROUTES[method, path].items()}
    assert _read(client, method, path, params, tokens[role]).status_code == 200


@pytest.mark.parametrize(("method", "path"), [*sorted(READ_ROUTES), ("POST", "/pupils/sar")])
def test_every_auditor_route_needs_a_token(client: TestClient, method: str, path: str) -> None:
    assert _read(client, method, path, {}, None).status_code == 401


# Routes that read no pupil-level data, and why. Every other GET route must leave a read.
UNAUDITED = {
    "/health": "says only that the database answers",
    "/metrics": "counts and ages for Prometheus, no pupil, no entry",
    "/openapi.json": "the API's description",
    "/incidents": "the queue: rules, recipients, counts and clocks, no pupil",
    "/users": "accounts, not pupils",
    "/desk": "the queue page: as /incidents",
    "/desk/signin": "the sign-in form",
    "/desk/signout": "signs out",
    "/desk/sar": "sends the reader to the search form, where the report is asked for",
    "/desk/clock.js": "the pages' countdown script",
    "/desk/print.js": "the reports' Print button",
    "/desk/pupils/erase": "the form to erase a pupil: no pupil",
    "/desk/policy": "the form to try a change of policy: no pupil",
    "/desk/notice": "the privacy notice, made from the pack and the register: no entry",
    "/log/checkpoint": "a signed tree head: a size and a root, no pupil",
    "/log/proof/inclusion/{seq}": "hashes and a checkpoint, no pupil",
    "/log/proof/consistency": "hashes and a checkpoint, no pupil",
}


# POST routes that read pupil-level data (each must leave a read), and those that do not.
POST_READS = {
    "/entries/search",
    "/entries/export",
    "/pupils/sar",
    "/pupils/readers",
    "/desk/sar",
    "/desk/incidents/{incident_id}/pupils",  # reveals who the pupils are
    "/desk/incidents/{incident_id}/pupils.csv",
    "/desk/policy",  # replays the sharing of the reader's schools under a candidate
}
POST_OTHERS = {
    "/desk/signin": "signs in",
    "/desk/search": "redirects to its GET, which reads",
    "/users": "adds a user",
    "/desk/incidents/{incident_id}/{action}": "acts on an incident",
    "/users/{name}/revoke": "ends a token",
    "/users/{name}/rotate": "replaces a token",
    "/pupils/erase": "erases a pupil: the erasure is its own entry, and answers no pupil's data",
    "/desk/pupils/erase": "shows back what the DPO typed to confirm it, then erases (as "
    "/pupils/erase)",
}


def _example_request(
    method: str, path: str, year: Year, client: TestClient, token: str
) -> tuple[str, dict[str, str]]:
    upn = a_census_pupil(year)
    incident = client.get("/incidents", headers=auth(token)).json()[0]["id"]
    url = path.replace("{seq}", "1").replace("{incident_id}", str(incident))
    if path == "/log/tile/{path:path}":  # an entry bundle: hash tiles name no pupil
        sign_if_grown(year.ledger, Signer("audit.example.org/ledger", bytes(range(32))))
        url = "/log/tile/entries/000"
    by_pseudonym = {"pupil": year.pseudonym(upn)}
    params = {
        "/desk/search": by_pseudonym,
        "/desk/search/export": by_pseudonym,
        "/desk/ropa": {"format": "html"},
        "/desk/notice/check": {"format": "html"},
    }.get(path, {"upn": upn} if method == "POST" else {})
    return url, params


def test_every_read_route_leaves_a_read_entry(
    client: TestClient, tokens: dict[Role, str], year: Year
) -> None:
    token = tokens[Role.DPO]
    routes = [
        (method, path)
        for path, methods in http_routes(client.app)
        for method in methods
        if (method == "GET" and path not in UNAUDITED) or (method == "POST" and path in POST_READS)
    ]
    posts = {p for p, methods in http_routes(client.app) if "POST" in methods}
    unclassified = {
        p for p in posts - POST_READS - set(POST_OTHERS) if not p.startswith("/incidents/")
    }
    assert not unclassified, "say whether each POST route reads pupil-level data"
    assert {
        ("GET", "/entries"),
        ("POST", "/entries/search"),
        ("POST", "/pupils/sar"),
        ("GET", "/reports/ropa"),
        ("GET", "/desk/search"),
        ("POST", "/desk/sar"),
        ("GET", "/incidents/{incident_id}"),
    } <= set(routes)
    _signed_in(client, token)
    for method, path in routes:
        url, params = _example_request(method, path, year, client, token)
        before = len(reads(year.ledger))
        if method == "POST" and path.startswith("/desk"):
            response = client.post(url, data=params)
        elif method == "POST":
            response = client.post(url, json=params, headers=auth(token))
        else:
            response = client.get(url, params=params, headers=auth(token))
        assert response.status_code == 200, f"{method} {path}: {response.status_code}"
        after = reads(year.ledger)
        # Revealing on the page also shows the incident again: the reveal and that look.
        made = 2 if path == "/desk/incidents/{incident_id}/pupils" else 1
        assert len(after) == before + made, f"{method} {path} left no read entry"
        assert details_of(after[-1])["by"] == "dpo-user"


def test_opening_an_incident_is_found_among_the_readers_of_every_pupil_in_it(
    client: TestClient, tokens: dict[Role, str], year: Year
) -> None:
    from pipeline.ledger.reading.reads import readers_of

    incident = next(
        i
        for i in client.get("/incidents", headers=auth(tokens[Role.DPO])).json()
        if len(i["entries"]) > 1
    )
    client.get(f"/incidents/{incident['id']}", headers=auth(tokens[Role.AUDITOR]))
    with year.ledger.engine.connect() as connection:
        last = next(
            e
            for e in entries(connection, Filters(kind="decision"))
            if e.seq == incident["entries"][-1]
        )
        readers = readers_of(connection, last.pupil_keys[0])
    assert [(details_of(r)["action"], details_of(r)["by"]) for r in readers] == [
        ("incident", "auditor-user")
    ]


def test_opening_an_incident_action_counts_among_the_readers_of_the_pupils_it_shows(
    client: TestClient, tokens: dict[Role, str], year: Year
) -> None:
    from pipeline.ledger.reading.reads import readers_of

    dpo = auth(tokens[Role.DPO])
    incident = client.get("/incidents", headers=dpo).json()[0]
    assert client.post(f"/incidents/{incident['id']}/acknowledge", headers=dpo).status_code == 200
    with year.ledger.engine.connect() as connection:
        action = list(entries(connection, Filters(kind="incident_action")))[-1]
        decision = next(
            e for e in entries(connection, Filters(kind="decision")) if e.seq == action.refers_to
        )
    assert action.pupil_keys == ()  # the action names no pupil itself
    opened = client.get(f"/entries/{action.seq}", headers=auth(tokens[Role.AUDITOR])).json()
    assert opened["refers_to"]["seq"] == decision.seq  # ... but its answer shows one
    with year.ledger.engine.connect() as connection:
        readers = readers_of(connection, decision.pupil_keys[0])
    assert ("open", "auditor-user") in [
        (details_of(r)["action"], details_of(r)["by"]) for r in readers
    ]


@pytest.mark.parametrize("path", ["/desk/search", "/desk/search/export"])
def test_a_page_address_naming_no_pseudonym_as_pupil_is_refused_naming_it(
    client: TestClient, tokens: dict[Role, str], path: str
) -> None:
    _signed_in(client, tokens[Role.AUDITOR])
    response = client.get(path, params={"pupil": "not-a-pseudonym", "go": "1"})
    assert response.status_code == 422
    assert "Pupil: not a pupil's pseudonym" in html.unescape(response.text)
