"""The breach desk's HTTP API: tokens, roles, the queue and the DPO's actions."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pipeline.ledger.storage.store import Ledger
from pipeline.policy.pack import Policy
from pipeline.users import Role, add_user
from tests.factory import upn
from tests.integration.breaches import breach_desk, ledger_with_breaches
from tests.integration.routes import http_routes

pytestmark = pytest.mark.integration

BODIES = {
    "users": {"name": "new-auditor", "role": "auditor"},
    "assess": {"risk": "high_risk", "reasons": "medical notes to an agency without consent"},
    "report": {"ico_reference": "ICO-00042"},
    "close": {"reason": "the agency confirmed deletion"},
    "erase": {"upn": upn(1), "reason": "the family asked"},
}


@pytest.fixture
def ledger(sqlite_url: str, policy: Policy) -> Ledger:
    return ledger_with_breaches(sqlite_url, policy)


@pytest.fixture
def tokens(ledger: Ledger) -> dict[Role, str]:
    return {role: add_user(ledger, f"{role.value}-user", role) for role in Role}


@pytest.fixture
def client(ledger: Ledger) -> TestClient:
    return TestClient(breach_desk(ledger))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# POST routes that only read: they take a UPN in the body, never in the URL.
READING_POSTS = {"/entries/search", "/entries/export", "/pupils/sar", "/pupils/readers"}


def mutating_paths(client: TestClient) -> list[str]:
    """The API's POST routes that change something (the pages' forms sign in by cookie:
    see test_desk_pages)."""
    return [
        path
        for path, methods in http_routes(client.app)
        if "POST" in methods and not path.startswith("/desk") and path not in READING_POSTS
    ]


def _first_incident(client: TestClient, token: str) -> int:
    queue = client.get("/incidents", headers=auth(token)).json()
    return int(next(i["id"] for i in queue if i["severity"] == "high"))


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def allowed_role(path: str) -> Role:
    """Who may call a mutating endpoint: the DPO acts on incidents, admins manage users."""
    return Role.ADMIN if path.startswith("/users") else Role.DPO


def test_there_are_mutating_endpoints_to_protect(client: TestClient) -> None:
    assert len(mutating_paths(client)) == 9


@pytest.mark.parametrize("token", [None, "sa_not-a-token"])
def test_every_mutating_endpoint_refuses_a_missing_or_wrong_token(
    client: TestClient, tokens: dict[Role, str], token: str | None
) -> None:
    incident = _first_incident(client, tokens[Role.DPO])
    for path in mutating_paths(client):
        action = path.rsplit("/", 1)[1]
        response = client.post(
            path.format(incident_id=incident, name="auditor-user"),
            json=BODIES.get(action, {}),
            headers=auth(token) if token else {},
        )
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("role", list(Role))
def test_every_mutating_endpoint_refuses_the_roles_it_is_not_for(
    client: TestClient, tokens: dict[Role, str], role: Role
) -> None:
    incident = _first_incident(client, tokens[Role.DPO])
    for path in mutating_paths(client):
        if allowed_role(path) is role:
            continue
        action = path.rsplit("/", 1)[1]
        response = client.post(
            path.format(incident_id=incident, name="auditor-user"),
            json=BODIES.get(action, {}),
            headers=auth(tokens[role]),
        )
        assert response.status_code == 403, path


def test_reading_needs_a_token(client: TestClient) -> None:
    assert client.get("/incidents").status_code == 401


def test_an_auditor_reads_the_queue_and_an_incident_with_its_entries(
    client: TestClient, tokens: dict[Role, str]
) -> None:
    queue = client.get("/incidents", headers=auth(tokens[Role.AUDITOR])).json()
    assert len(queue) == 2
    assert all(i["seconds_left"] is not None for i in queue)
    assert queue == sorted(queue, key=lambda i: i["seconds_left"])
    detail = client.get(f"/incidents/{queue[0]['id']}", headers=auth(tokens[Role.AUDITOR])).json()
    assert [e["seq"] for e in detail["ledger_entries"]] == detail["entries"]
    assert all(e["reasons"] and e["policy_version"] for e in detail["ledger_entries"])


def test_the_dpo_works_a_high_risk_breach_through_to_closure(
    client: TestClient, tokens: dict[Role, str]
) -> None:
    incident = _first_incident(client, tokens[Role.DPO])
    headers = auth(tokens[Role.DPO])
    steps = [
        ("acknowledge", {}),
        ("assess", BODIES["assess"]),
        ("report", BODIES["report"]),
        ("notify-subjects", {}),
        ("close", BODIES["close"]),
    ]
    for action, body in steps:
        response = client.post(f"/incidents/{incident}/{action}", json=body, headers=headers)
        assert response.status_code == 200, response.text
    final = response.json()
    assert final["status"] == "closed"
    assert [h["by"] for h in final["history"]] == ["dpo-user"] * 5
    assert final["history"][2]["ico_reference"] == "ICO-00042"


def test_a_forbidden_transition_is_a_conflict_naming_why(
    client: TestClient, tokens: dict[Role, str]
) -> None:
    incident = _first_incident(client, tokens[Role.DPO])
    response = client.post(
        f"/incidents/{incident}/close", json=BODIES["close"], headers=auth(tokens[Role.DPO])
    )
    assert response.status_code == 409
    assert "assessed before it is closed" in response.json()["detail"]


def test_an_unknown_incident_is_404(client: TestClient, tokens: dict[Role, str]) -> None:
    response = client.post("/incidents/999999/acknowledge", headers=auth(tokens[Role.DPO]))
    assert response.status_code == 404


def test_the_openapi_schema_is_published(client: TestClient, tokens: dict[Role, str]) -> None:
    schema = client.get("/openapi.json", headers=auth(tokens[Role.AUDITOR])).json()
    assert "/incidents/{incident_id}/assess" in schema["paths"]


def test_an_admin_adds_a_user_whose_token_then_works(
    client: TestClient, tokens: dict[Role, str]
) -> None:
    made = client.post("/users", json=BODIES["users"], headers=auth(tokens[Role.ADMIN]))
    assert made.status_code == 201
    assert client.get("/incidents", headers=auth(made.json()["token"])).status_code == 200
    again = client.post("/users", json=BODIES["users"], headers=auth(tokens[Role.ADMIN]))
    assert again.status_code == 409
    listed = client.get("/users", headers=auth(tokens[Role.ADMIN])).json()
    assert {"name": "new-auditor", "role": "auditor", "schools": None} in listed


def test_refused_requests_are_logged_without_the_token(
    client: TestClient, tokens: dict[Role, str], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from pipeline.logging import configure as configure_logging

    configure_logging(level="INFO", json=True)
    try:
        client.get("/incidents", headers=auth("sa_wrong-token"))
        client.post("/users", json=BODIES["users"], headers=auth(tokens[Role.AUDITOR]))
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        configure_logging(level="WARNING")
    events = {line["event"]: line for line in lines}
    assert events["request_unauthenticated"]["path"] == "/incidents"
    assert events["request_forbidden"]["user"] == "auditor-user"
    assert not any("sa_wrong-token" in json.dumps(line) for line in lines)
