"""People scoped to schools: over a ledger holding two schools of a trust, a DPO of school
A, an auditor of school B and the trust's DPO call every API route and page. Nothing of
the other school reaches a scoped user; another school's entry, incident or pupil answers
404, as if it did not exist. A route added without a say here fails the test."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.api.app import create_api
from pipeline.cli.main import app
from pipeline.incidents.notify import Delivery, Target, notify_new_incidents
from pipeline.ledger.log.checkpoints import sign_if_grown
from pipeline.ledger.reading.queries import Filters, entries
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.pupils import finder
from pipeline.packs import pack_text
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.transparency.note import Signer
from pipeline.users import Role, add_user
from tests.factory import left, line, referral, transfer, upn
from tests.integration.routes import http_routes
from tests.integration.serving import CHROMIUM, needs_chromium, served, sign_in
from tests.integration.test_verifiable_log import ENV, ledger_with

pytestmark = pytest.mark.integration
A, B = "116234", "135000"
MOVER, ONLY_A, ONLY_B = upn(50), upn(51), upn(52)
KEY = bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"])
pseudonym = pseudonymiser(KEY)
#: What only school A's entries carry, and what only school B's do (besides the
#: pseudonym of the pupil only it has: see :class:`Trust`).
RECIPIENTS = {
    A: ("agency:school-nursing", "agency:hearing-impairment"),
    B: ("agency:educational-psychology", "agency:speech-language-therapy"),
}
OTHER = {A: B, B: A}
ONLY = {A: ONLY_A, B: ONLY_B}


def _events() -> list[dict[str, Any]]:
    at_a, at_b = f"/schools/{A}", f"/schools/{B}"
    return [
        referral(
            source=at_a,
            recipient="agency:hearing-impairment",
            pupils=[{"upn": MOVER}],
            categories=["personal", "assessment"],
            lawful_basis="public_task",
            time="2026-06-01T10:00:00+01:00",
        ),
        left(
            MOVER,
            left_on="2026-07-17",
            destination=f"school:{B}",
            source=at_a,
            time="2026-07-17T15:00:00+01:00",
        ),
        transfer(
            source=at_a,
            recipient=f"school:{B}",
            pupils=[{"upn": MOVER}],
            time="2026-07-20T09:00:00+01:00",
        ),
        referral(
            source=at_a,
            recipient="agency:school-nursing",
            pupils=[{"upn": ONLY_A}],
            categories=["personal", "ethnicity"],  # a special category: a high-severity breach
        ),
        referral(
            source=at_b,
            recipient="agency:speech-language-therapy",
            pupils=[{"upn": MOVER}],
            categories=["personal"],
            lawful_basis="public_task",
            time="2026-09-10T10:00:00+01:00",
        ),
        referral(
            source=at_b,
            recipient="agency:educational-psychology",
            pupils=[{"upn": ONLY_B}],
            categories=["personal", "ethnicity"],
        ),
    ]


@dataclass
class Trust:
    ledger: Ledger
    seqs: dict[str, list[int]]  # school -> its entries
    incidents: dict[str, int]  # school -> one of its incidents
    marks: dict[str, tuple[str, ...]]  # school -> what only its entries carry


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    url = f"sqlite:///{tmp_path_factory.mktemp('trust')}/ledger.db"
    ledger = ledger_with(url, [line(e) for e in _events()])
    sign_if_grown(ledger, Signer("trust.example.org/ledger", bytes(range(32))))
    with ledger.engine.connect() as connection:
        found = list(entries(connection, Filters(kind="decision")))
    seqs = {school: [e.seq for e in found if e.school == school] for school in (A, B)}
    token = add_user(ledger, "probe", Role.DPO)
    client = TestClient(create_api(ledger, pseudonym=pseudonym))
    listed = client.get("/incidents", headers={"Authorization": f"Bearer {token}"}).json()
    incidents = {i["school"]: i["id"] for i in listed}
    assert set(incidents) == {A, B}, listed
    find = finder(ledger)
    marks: dict[str, tuple[str, ...]] = {
        school: (*RECIPIENTS[school], find(ONLY[school])) for school in (A, B)
    }
    return Trust(ledger, seqs, incidents, marks)


@dataclass
class Viewer:
    school: str | None  # None: the trust's DPO
    role: Role
    token: str
    api: TestClient
    pages: TestClient


@pytest.fixture(scope="module")
def viewers(trust: Trust, policy: Policy) -> dict[str, Viewer]:
    made = {}
    for name, school, role in (
        ("dpo-a", A, Role.DPO),
        ("auditor-b", B, Role.AUDITOR),
        ("trust-dpo", None, Role.DPO),
    ):
        token = add_user(trust.ledger, name, role, schools=[school] if school else [])
        app = create_api(trust.ledger, policy=policy, pseudonym=pseudonym)
        pages = TestClient(app)
        assert pages.post("/desk/signin", data={"token": token}).status_code in (200, 303)
        made[name] = Viewer(school, role, token, TestClient(app), pages)
    return made


Call = tuple[str, str, dict[str, Any]]  # method, url, request keywords


def _strict_pack() -> tuple[str, bytes, str]:
    """A candidate pack under which every event sharing personal data changes: it makes
    that category special (its difference from the pack in force names no recipient)."""
    document = yaml.safe_load(pack_text()[0])
    document["categories"]["personal"]["special"] = True
    return ("strict.yaml", yaml.safe_dump(document).encode(), "text/yaml")


_STRICT = _strict_pack()
#: A body each incident action accepts.
ACTIONS: dict[str, dict[str, Any]] = {
    "acknowledge": {},
    "assess": {"risk": "risk", "reasons": "test"},
    "report": {"ico_reference": "ICO-1", "reported_at": "2026-10-01T10:00:00Z"},
    "notify-subjects": {},
    "close": {"reason": "test"},
}


def _acting(action: str) -> Callable[[Trust, str], list[Call]]:
    """The call that acts on the other school's incident."""

    def calls(trust: Trust, other: str) -> list[Call]:
        url = f"/incidents/{trust.incidents[other]}/{action}"
        return [("POST", url, {"json": ACTIONS[action]})]

    return calls


#: For each route, the calls that would reach the other school's data, as a function of
#: (trust, the other school). ``None``: the route holds no school's data (said why).
ROUTES: dict[tuple[str, str], Callable[[Trust, str], list[Call]] | str] = {
    ("GET", "/health"): "says only that the database answers",
    ("GET", "/metrics"): "counts and ages, no entry, for an admin of every school alone",
    ("GET", "/openapi.json"): "the API's description",
    ("HEAD", "/openapi.json"): "the API's description",
    ("GET", "/desk/clock.js"): "a script",
    ("GET", "/desk/print.js"): "a script",
    ("GET", "/desk/signin"): "the sign-in form",
    ("POST", "/desk/signin"): "signs in",
    ("GET", "/desk/signout"): "signs out",
    ("GET", "/log/checkpoint"): "a size and a root: no entry",
    ("HEAD", "/log/checkpoint"): "a checkpoint's headers: no entry",
    ("GET", "/log/proof/consistency"): "hashes and a checkpoint: no entry",
    ("GET", "/incidents"): lambda t, o: [("GET", "/incidents?include_closed=true", {})],
    ("GET", "/incidents/{incident_id}"): lambda t, o: [("GET", f"/incidents/{t.incidents[o]}", {})],
    **{("POST", f"/incidents/{{incident_id}}/{action}"): _acting(action) for action in ACTIONS},
    ("GET", "/entries"): lambda t, o: [("GET", "/entries?limit=500", {})],
    ("POST", "/entries/search"): lambda t, o: [
        ("POST", "/entries/search", {"json": {"limit": 500}}),
        ("POST", "/entries/search", {"json": {"upn": ONLY[o]}}),
    ],
    ("GET", "/entries/export"): lambda t, o: [("GET", "/entries/export?format=jsonl", {})],
    ("POST", "/entries/export"): lambda t, o: [
        ("POST", "/entries/export", {"json": {"upn": ONLY[o], "format": "jsonl"}})
    ],
    ("GET", "/entries/{seq}"): lambda t, o: [("GET", f"/entries/{seq}", {}) for seq in t.seqs[o]],
    ("POST", "/pupils/sar"): lambda t, o: [
        ("POST", "/pupils/sar", {"json": {"upn": ONLY[o]}}),
        ("POST", "/pupils/sar", {"json": {"upn": MOVER}}),
    ],
    ("POST", "/pupils/readers"): lambda t, o: [
        ("POST", "/pupils/readers", {"json": {"upn": ONLY[o]}})
    ],
    ("GET", "/reports/ropa"): lambda t, o: [
        ("GET", "/reports/ropa", {}),
        ("GET", f"/reports/ropa?school={o}", {}),
    ],
    ("GET", "/log/proof/inclusion/{seq}"): lambda t, o: [
        ("GET", f"/log/proof/inclusion/{seq}", {}) for seq in t.seqs[o]
    ],
    ("GET", "/log/leaf/{seq}"): lambda t, o: [("GET", f"/log/leaf/{seq}", {}) for seq in t.seqs[o]],
    ("GET", "/log/tile/{path:path}"): lambda t, o: [("GET", "/log/tile/entries/000.p/8", {})],
    ("HEAD", "/log/tile/{path:path}"): lambda t, o: [("HEAD", "/log/tile/entries/000.p/8", {})],
    ("GET", "/users"): lambda t, o: [("GET", "/users", {})],
    ("POST", "/users"): lambda t, o: [("POST", "/users", {"json": {"name": "x", "role": "dpo"}})],
    ("POST", "/users/{name}/revoke"): lambda t, o: [("POST", "/users/probe/revoke", {})],
    ("POST", "/users/{name}/rotate"): lambda t, o: [("POST", "/users/probe/rotate", {})],
    ("GET", "/desk"): lambda t, o: [
        ("GET", "/desk?all=1", {}),
        ("GET", f"/desk?school={o}", {}),
        ("GET", "/desk?status=closed", {}),
    ],
    ("GET", "/desk/incidents/{incident_id}"): lambda t, o: [
        ("GET", f"/desk/incidents/{t.incidents[o]}", {})
    ],
    ("POST", "/desk/incidents/{incident_id}/pupils"): lambda t, o: [
        ("POST", f"/desk/incidents/{t.incidents[o]}/pupils", {"data": {}})
    ],
    ("POST", "/desk/incidents/{incident_id}/pupils.csv"): lambda t, o: [
        ("POST", f"/desk/incidents/{t.incidents[o]}/pupils.csv", {"data": {}})
    ],
    ("POST", "/desk/incidents/{incident_id}/{action}"): lambda t, o: [
        ("POST", f"/desk/incidents/{t.incidents[o]}/acknowledge", {"data": {}})
    ],
    ("GET", "/desk/search"): lambda t, o: [
        ("GET", "/desk/search?go=1", {}),
        ("GET", f"/desk/search?pupil={t.marks[o][-1]}&go=1", {}),
    ],
    ("POST", "/desk/search"): lambda t, o: [("POST", "/desk/search", {"data": {"upn": ONLY[o]}})],
    ("GET", "/desk/search/export"): lambda t, o: [("GET", "/desk/search/export?format=jsonl", {})],
    ("GET", "/desk/entries/{seq}"): lambda t, o: [
        ("GET", f"/desk/entries/{seq}", {}) for seq in t.seqs[o]
    ],
    ("GET", "/desk/sar"): lambda t, o: [("GET", "/desk/sar", {})],
    ("POST", "/desk/sar"): lambda t, o: [
        ("POST", "/desk/sar", {"data": {"upn": ONLY[o]}}),
        ("POST", "/desk/sar", {"data": {"upn": MOVER}}),
    ],
    ("GET", "/desk/ropa"): lambda t, o: [("GET", "/desk/ropa?format=html", {})],
    ("GET", "/desk/notice"): lambda t, o: [
        ("GET", "/desk/notice", {}),
        ("GET", f"/desk/notice?school={o}", {}),
    ],
    ("GET", "/desk/notice/check"): lambda t, o: [
        ("GET", "/desk/notice/check?format=html", {}),
        ("GET", "/desk/notice/check?format=json", {}),
    ],
    # Erasing the other school's pupil: as if there were none (a DPO), or refused (others).
    ("POST", "/pupils/erase"): lambda t, o: [
        ("POST", "/pupils/erase", {"json": {"upn": ONLY[o], "reason": "test"}})
    ],
    ("GET", "/desk/pupils/erase"): "the form to erase a pupil: no school's data",
    ("POST", "/desk/pupils/erase"): lambda t, o: [
        ("POST", "/desk/pupils/erase", {"data": {"upn": ONLY[o], "reason": "test"}}),
        (
            "POST",
            "/desk/pupils/erase",
            {"data": {"upn": ONLY[o], "reason": "t", "confirmed": "yes"}},
        ),
    ],
    # So far ahead that every record the trust holds is due (the check below shows the
    # trust's records are listed, by the user's own school).
    ("GET", "/desk/retention"): lambda t, o: [("GET", "/desk/retention?as_of=2090-01-01", {})],
    ("GET", "/desk/policy"): "the form to try a change of policy: no school's data",
    # A candidate under which every event changes: each listed, of the user's schools alone.
    ("POST", "/desk/policy"): lambda t, o: [
        ("POST", "/desk/policy", {"data": {"pack": ""}, "files": {"candidate": _STRICT}})
    ],
}


def test_every_route_and_page_says_how_it_is_scoped(viewers: dict[str, Viewer]) -> None:
    served = {
        (method, path)
        for path, methods in http_routes(viewers["dpo-a"].api.app)
        for method in methods
    }
    assert served == set(ROUTES), "a route was added or removed: say how it is scoped here"


@pytest.mark.parametrize("name", ["dpo-a", "auditor-b"])
def test_a_user_of_one_school_gets_nothing_of_the_other(
    trust: Trust, viewers: dict[str, Viewer], name: str
) -> None:
    viewer = viewers[name]
    assert viewer.school is not None
    other = OTHER[viewer.school]
    for (method, path), calls in ROUTES.items():
        if isinstance(calls, str):
            continue
        for call_method, url, keywords in calls(trust, other):
            client = viewer.pages if url.startswith("/desk") else viewer.api
            headers = {} if url.startswith("/desk") else {"Authorization": f"Bearer {viewer.token}"}
            answer = client.request(
                call_method, url, headers=headers, follow_redirects=False, **keywords
            )
            where = f"{name}: {call_method} {url} ({method} {path})"
            assert answer.status_code in (200, 303, 403, 404, 409), f"{where}: {answer.status_code}"
            body = answer.content.decode("utf-8", "replace")
            asked = url + str(keywords)  # what the user typed may be echoed back
            for mark in (m for m in trust.marks[other] if m not in asked):
                assert mark not in body, f"{where} shows {mark!r} of school {other}"
            if "{seq}" in path or "{incident_id}" in path:
                assert answer.status_code in (403, 404), f"{where}: {answer.status_code}"


def test_another_schools_incident_or_entry_answers_as_none_and_the_attempt_is_logged(
    trust: Trust, viewers: dict[str, Viewer], capsys: pytest.CaptureFixture[str]
) -> None:
    """The same 404 as for an incident that does not exist; only the log, a warning
    naming the user and the route, tells them apart."""
    from pipeline.logging import configure as configure_logging

    dpo = viewers["dpo-a"]
    theirs = trust.incidents[B]
    configure_logging(level="INFO", json=True)
    try:
        capsys.readouterr()
        other = dpo.pages.get(f"/desk/incidents/{theirs}")
        unknown = dpo.pages.get("/desk/incidents/999999")
        asked = [
            dpo.pages.post(f"/desk/incidents/{theirs}/pupils"),
            dpo.pages.post(f"/desk/incidents/{theirs}/acknowledge"),
            dpo.pages.get(f"/desk/entries/{trust.seqs[B][0]}"),
            dpo.api.get(f"/incidents/{theirs}", headers={"Authorization": f"Bearer {dpo.token}"}),
            dpo.api.get(
                f"/entries/{trust.seqs[B][0]}", headers={"Authorization": f"Bearer {dpo.token}"}
            ),
        ]
        err = capsys.readouterr().err
    finally:
        configure_logging(level="WARNING")
    assert other.status_code == unknown.status_code == 404
    said = other.text.replace(f"incident {theirs}.", "incident N.")
    assert said == unknown.text.replace("incident 999999.", "incident N.")
    assert all(answer.status_code == 404 for answer in asked)
    warned = [line for line in map(json.loads, err.splitlines()) if line["level"] == "warning"]
    assert {(w["event"], w["user"]) for w in warned} == {("other_school_asked", "dpo-a")}
    assert sorted(w["route"] for w in warned) == sorted(
        [
            "/desk/incidents/{incident_id}",
            "/desk/incidents/{incident_id}/pupils",
            "/desk/incidents/{incident_id}/{action}",
            "/desk/entries/{seq}",
            "/incidents/{incident_id}",
            "/entries/{seq}",
        ]
    )
    assert ONLY_B not in err and MOVER not in err


def test_a_dpo_of_one_school_reveals_nothing_of_the_others_incident(
    trust: Trust, viewers: dict[str, Viewer]
) -> None:
    dpo = viewers["dpo-a"]
    with trust.ledger.engine.connect() as connection:
        before = Ledger.head(connection)[0]
    for asked in ("pupils", "pupils.csv"):
        answer = dpo.pages.post(f"/desk/incidents/{trust.incidents[B]}/{asked}")
        assert answer.status_code == 404 and ONLY_B not in answer.text
    with trust.ledger.engine.connect() as connection:
        assert Ledger.head(connection)[0] == before


def test_the_trusts_dpo_narrows_the_queue_to_one_school(
    trust: Trust, viewers: dict[str, Viewer]
) -> None:
    pages = viewers["trust-dpo"].pages
    whole = pages.get("/desk").text
    assert all(f'<option value="{school}"' in whole for school in (A, B))
    narrowed = pages.get(f"/desk?school={B}").text
    shown = set(re.findall(r'<td class="school" data-urn="(\d+)">', narrowed))
    assert shown == {B}
    assert f'data-incident="{trust.incidents[B]}"' in narrowed
    assert f'data-incident="{trust.incidents[A]}"' not in narrowed


def test_the_trusts_dpo_sees_both_schools(trust: Trust, viewers: dict[str, Viewer]) -> None:
    viewer = viewers["trust-dpo"]
    headers = {"Authorization": f"Bearer {viewer.token}"}
    report = viewer.api.post("/pupils/sar", json={"upn": MOVER}, headers=headers).text
    assert "agency:hearing-impairment" in report and "agency:speech-language-therapy" in report
    for school in (A, B):
        assert (
            viewer.api.get(f"/incidents/{trust.incidents[school]}", headers=headers).status_code
            == 200
        )
    listed = viewer.api.get("/entries?limit=500", headers=headers).text
    assert all(mark in listed for marks in trust.marks.values() for mark in marks)


def test_a_pupil_who_moved_shows_each_school_its_own_part(viewers: dict[str, Viewer]) -> None:
    dpo = viewers["dpo-a"]
    report = dpo.api.post(
        "/pupils/sar", json={"upn": MOVER}, headers={"Authorization": f"Bearer {dpo.token}"}
    ).json()
    recipients = {d["recipient"] for d in report["disclosures"]}
    assert recipients == {"agency:hearing-impairment", f"school:{B}"}


def test_a_scoped_user_still_sees_their_own_school(
    trust: Trust, viewers: dict[str, Viewer]
) -> None:
    dpo = viewers["dpo-a"]
    headers = {"Authorization": f"Bearer {dpo.token}"}
    assert dpo.api.get(f"/incidents/{trust.incidents[A]}", headers=headers).status_code == 200
    assert dpo.api.get(f"/entries/{trust.seqs[A][0]}", headers=headers).status_code == 200
    listed = dpo.api.get("/entries?limit=500", headers=headers).text
    assert all(mark in listed for mark in trust.marks[A])
    page = dpo.pages.get(f"/desk/incidents/{trust.incidents[A]}")
    assert page.status_code == 200


def test_users_add_takes_the_schools_a_user_may_see(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/users.db"
    runner = CliRunner()
    made = runner.invoke(
        app, ["users", "add", "head-a", "--role", "dpo", "--school", A, "--db", url]
    )
    assert made.exit_code == 0, made.output
    listed = runner.invoke(app, ["users", "list", "--db", url])
    assert A in listed.stdout
    wrong = runner.invoke(
        app, ["users", "add", "x", "--role", "dpo", "--school", "1162", "--db", url]
    )
    assert wrong.exit_code == 2 and "six digits" in wrong.stderr


def test_an_admin_of_some_schools_manages_no_users(trust: Trust, policy: Policy) -> None:
    token = add_user(trust.ledger, "admin-a", Role.ADMIN, schools=[A])
    client = TestClient(create_api(trust.ledger, policy=policy, pseudonym=pseudonym))
    answer = client.get("/users", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403 and "every school" in answer.text


def test_each_schools_notices_go_to_its_own_targets_and_all_to_the_trusts(trust: Trust) -> None:
    received: dict[str, list[str]] = {"a": [], "b": [], "trust": []}

    def target(name: str, school: str | None) -> Target:
        def send(sent: dict[str, Any]) -> Delivery:
            received[name].append(str(sent["school"]))
            return Delivery(True, 1)

        return Target("webhook", f"https://{name}.example/hook", send, school)

    targets = [target("a", A), target("b", B), target("trust", None)]
    assert notify_new_incidents(trust.ledger, targets, "https://desk.example") > 0
    assert set(received["a"]) == {A} and set(received["b"]) == {B}
    assert sorted(received["trust"]) == sorted(received["a"] + received["b"])


def test_the_operators_subject_access_report_takes_a_school(trust: Trust) -> None:
    url = trust.ledger.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    args = ["report", "sar", "--pupil", MOVER, "--db", url, "-f", "json"]
    whole = runner.invoke(app, args, env=ENV)
    part = runner.invoke(app, [*args, "--school", B], env=ENV)
    assert whole.exit_code == part.exit_code == 0, whole.output + part.output
    assert (
        "agency:hearing-impairment" in whole.stdout
        and "agency:speech-language-therapy" in whole.stdout
    )
    assert (
        "agency:hearing-impairment" not in part.stdout
        and "agency:speech-language-therapy" in part.stdout
    )
    none = runner.invoke(
        app, ["report", "sar", "--pupil", ONLY_A, "--db", url, "--school", B], env=ENV
    )
    assert none.exit_code == 2 and "no entry of school 135000" in none.stderr


@pytest.mark.slow  # a browser
@needs_chromium
def test_the_trusts_dpo_narrows_the_queue_to_one_school_in_a_browser(
    trust: Trust, viewers: dict[str, Viewer], policy: Policy
) -> None:
    """In Chromium: the trust's DPO picks a school from the queue's filter and sees its
    incidents alone; a DPO of one school is offered no school to pick."""
    from playwright.sync_api import expect, sync_playwright

    app = create_api(trust.ledger, policy=policy, pseudonym=pseudonym)
    with served(app) as address, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        for name in ("trust-dpo", "dpo-a"):
            page = browser.new_page()
            sign_in(page, address, viewers[name].token)
            expect(page.locator("#queue")).to_be_visible()
            school = page.locator("#filters select[name=school]")
            if name == "dpo-a":
                expect(school).to_have_count(0)
                continue
            page.select_option("#filters select[name=school]", B)
            page.click("#filters button[type=submit]")
            shown = page.locator("#queue td.school")
            expect(shown.first).to_be_visible()
            assert {c.get_attribute("data-urn") for c in shown.all()} == {B}
            expect(page.locator(f"tr[data-incident='{trust.incidents[A]}']")).to_have_count(0)
        browser.close()


def test_records_to_destroy_are_listed_by_the_school_that_holds_them(
    viewers: dict[str, Viewer],
) -> None:
    """The pupil who left school A is due there (a year from leaving), by UPN, on A's
    DPO's page and the trust DPO's; school B recorded no leaving, so B holds nothing due;
    an auditor, who may not see a pupil's UPN, is refused the page."""
    for name in ("dpo-a", "trust-dpo"):
        page = viewers[name].pages.get("/desk/retention?as_of=2090-01-01")
        assert page.status_code == 200
        assert MOVER in page.text and ONLY_A not in page.text and ONLY_B not in page.text
    refused = viewers["auditor-b"].pages.get("/desk/retention?as_of=2090-01-01")
    assert refused.status_code == 403
    before = viewers["dpo-a"].pages.get("/desk/retention?as_of=2027-07-17")
    assert "Nothing is due on 17 Jul 2027" in before.text
    assert MOVER in viewers["dpo-a"].pages.get("/desk/retention?as_of=2027-07-18").text


def test_trying_a_change_of_policy_replays_the_users_own_schools_alone(
    trust: Trust, viewers: dict[str, Viewer]
) -> None:
    """The events a candidate would change are listed of the DPO's own school alone; the
    trust's DPO sees both schools'."""
    listed = {}
    for name in ("dpo-a", "trust-dpo"):
        page = viewers[name].pages.post(
            "/desk/policy", data={"pack": ""}, files={"candidate": _STRICT}
        )
        assert page.status_code == 200
        listed[name] = {int(seq) for seq in re.findall(r'href="/desk/entries/(\d+)"', page.text)}
    assert listed["dpo-a"] and listed["dpo-a"] <= set(trust.seqs[A])
    assert listed["trust-dpo"] & set(trust.seqs[B])
