"""What stands in front of every route: headers, body limits, authentication before the
body is read, bounded ids, and 503 with Retry-After when the ledger is busy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from pipeline.api.guards import MAX_BODY
from pipeline.ledger.storage.store import Ledger
from pipeline.policy.pack import Policy
from pipeline.users import Role, add_user
from tests.integration.breaches import breach_desk, ledger_with_breaches

pytestmark = pytest.mark.integration
HUGE = "99999999999999999999"


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Ledger:
    url = f"sqlite:///{tmp_path_factory.mktemp('guards')}/ledger.db"
    return ledger_with_breaches(url, policy)


@pytest.fixture(scope="module")
def dpo(ledger: Ledger) -> dict[str, str]:
    return {"Authorization": f"Bearer {add_user(ledger, 'guard-dpo', Role.DPO)}"}


@pytest.fixture(scope="module")
def client(ledger: Ledger) -> TestClient:
    return TestClient(breach_desk(ledger), follow_redirects=False)


@pytest.mark.parametrize("path", ["/health", "/desk/signin", "/incidents", "/nowhere"])
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    headers = client.get(path).headers
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    script = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert script.strip() == "script-src 'self'"  # the desk's own file, nothing inline
    assert headers["x-content-type-options"] == "nosniff"
    assert headers.get_list("cache-control") == ["no-store"]  # pages and answers name pupils
    assert "strict-transport-security" not in headers  # plain HTTP: HSTS means nothing


def test_hsts_is_sent_over_https(ledger: Ledger) -> None:
    secure = TestClient(breach_desk(ledger), base_url="https://desk.school.example")
    assert secure.get("/health").headers["strict-transport-security"].startswith("max-age=")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_no_page_loads_code_from_a_cdn(client: TestClient, dpo: dict[str, str], path: str) -> None:
    assert client.get(path).status_code == 404
    assert client.get("/openapi.json", headers=dpo).status_code == 200


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_apis_description_needs_a_token_as_every_route_but_health_does(
    client: TestClient, dpo: dict[str, str], method: str
) -> None:
    refused = client.request(method, "/openapi.json")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert client.request(method, "/openapi.json", headers=dpo).status_code == 200


#: How a browser says a form was posted from another site (login CSRF: signing the
#: victim in as the attacker, so that what they then search for is the attacker's to see).
CROSS_SITE = [
    {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://pupils.testserver"},
    {"Origin": "https://evil.example"},  # a browser that sends no Sec-Fetch-Site
    {"Origin": "null"},  # a sandboxed frame's form
]


@pytest.mark.parametrize("fetched_from", CROSS_SITE)
def test_a_sign_in_posted_from_another_site_is_refused_and_opens_no_session(
    client: TestClient, ledger: Ledger, fetched_from: dict[str, str]
) -> None:
    token = add_user(ledger, f"csrf-{uuid.uuid4().hex[:8]}", Role.AUDITOR)
    answer = client.post("/desk/signin", data={"token": token}, headers=fetched_from)
    assert answer.status_code == 403 and "another site" in answer.text
    assert "set-cookie" not in answer.headers


@pytest.mark.parametrize(
    "fetched_from",
    [{"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}, {}],
)
def test_a_sign_in_from_the_desks_own_page_or_a_script_opens_a_session(
    client: TestClient, ledger: Ledger, fetched_from: dict[str, str]
) -> None:
    token = add_user(ledger, f"signin-{uuid.uuid4().hex[:8]}", Role.AUDITOR)
    try:
        answer = client.post("/desk/signin", data={"token": token}, headers=fetched_from)
    finally:
        client.cookies.clear()
    assert answer.status_code == 303 and "sharing_audit_session" in answer.headers["set-cookie"]


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    client: TestClient, dpo: dict[str, str]
) -> None:
    big = b'{"reason": "' + b"x" * MAX_BODY + b'"}'
    response = client.post(
        "/incidents/1/close", content=big, headers={**dpo, "Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_a_chunked_body_over_the_limit_is_refused(client: TestClient, dpo: dict[str, str]) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"x" * 1024

    response = client.post(
        "/incidents/1/close", content=chunks(), headers={**dpo, "Content-Type": "application/json"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize("body", [b"{not json", b"x" * 1000, b'{"reason": 1}'])
def test_a_body_without_a_token_is_refused_unread(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/incidents/1/close", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401  # not 422: the body was never parsed


def test_a_desk_form_without_a_session_goes_to_sign_in_unread(client: TestClient) -> None:
    response = client.post(
        "/desk/incidents/1/close",
        content=b"reason=" + b"x" * 5000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 303 and response.headers["location"] == "/desk/signin"


@pytest.mark.parametrize(
    "path",
    [
        f"/entries/{HUGE}",
        f"/incidents/{HUGE}",
        f"/desk/entries/{HUGE}",
        f"/desk/incidents/{HUGE}",
        "/entries/-1",
        "/desk/entries/0",
    ],
)
def test_an_id_past_any_the_ledger_can_hold_is_not_found(
    client: TestClient, dpo: dict[str, str], path: str
) -> None:
    token = dpo["Authorization"].split()[1]
    client.post("/desk/signin", data={"token": token})
    try:
        response = client.get(path, headers=dpo)
    finally:
        client.cookies.clear()
    assert response.status_code in (404, 422), response.text


def test_a_request_that_finds_no_free_connection_is_told_to_come_back(
    ledger: Ledger, dpo: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipeline.ledger.storage.store.POOL_WAIT", 0.2)
    api = breach_desk(ledger, threads=1)
    held = [api.state.ledger.engine.connect() for _ in range(2)]  # the pool's all
    try:
        response = TestClient(api).get("/incidents", headers=dpo)
    finally:
        for connection in held:
            connection.close()
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert TestClient(api).get("/incidents", headers=dpo).status_code == 200


def test_a_number_json_cannot_carry_is_refused_not_a_server_error(
    client: TestClient, dpo: dict[str, str]
) -> None:
    headers = {**dpo, "Content-Type": "application/json"}
    for path in ("/entries/search", "/entries/export", "/pupils/sar"):
        assert client.post(path, content=b"1e309", headers=headers).status_code == 422


def test_a_refusal_names_what_is_wrong_without_echoing_what_was_given(
    client: TestClient, dpo: dict[str, str]
) -> None:
    given = "G85020072109Z-not-a-upn"
    response = client.post("/entries/search", json={"upn": given}, headers=dpo)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "upn"]
    assert given not in response.text
