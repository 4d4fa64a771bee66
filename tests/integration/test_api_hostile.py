"""Every route, API and pages alike, with hostile text in every parameter, path segment
and body field: no request makes a server error."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ledger.storage.store import Ledger
from pipeline.policy.pack import Policy
from pipeline.users import Role, add_user
from tests.factory import upn
from tests.integration.breaches import breach_desk, ledger_with_breaches
from tests.integration.routes import http_routes

pytestmark = pytest.mark.integration

HOSTILE = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\r\nSet-Cookie: x=1",
            "[/x][bold]",
            "\x1b[2J\x1b]0;t\x07",
            "\u202e",
            "../../etc/passwd",
            "%00",
            "%2e%2e%2f",
            "' OR 1=1 --",
            '"; DROP TABLE ledger_entry;',
            "9" * 30,
            "-1",
            "0",
            "1e309",
            "NaN",
            "null",
            "true",
            "[]",
            "{}",
            "x" * 8_000,
            upn(1),
            upn(1).lower(),
            "<script>alert(1)</script>",
            "2026-02-30",
            "9999-12-31T23:59Z",
            "ab" * 32,
            "\ud7ff",
            "\U0001f600" * 50,
        ]
    ),
    st.text(max_size=300),
)
NAMES = [
    "upn",
    "pupil",
    "recipient",
    "type",
    "decision",
    "rule",
    "category",
    "kind",
    "since",
    "until",
    "after",
    "limit",
    "format",
    "include_closed",
    "token",
    "risk",
    "reasons",
    "ico_reference",
    "reason",
    "name",
    "role",
    "expires_at",
]


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, policy: Policy
) -> tuple[TestClient, dict[Role, str]]:
    """The app, a client signed in to the desk as the DPO, and each role's token."""
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile')}/ledger.db"
    ledger: Ledger = ledger_with_breaches(url, policy)
    tokens = {role: add_user(ledger, role.value, role) for role in (Role.ADMIN, Role.DPO)}
    client = TestClient(breach_desk(ledger), raise_server_exceptions=False, follow_redirects=False)
    client.post("/desk/signin", data={"token": tokens[Role.DPO]})
    return client, tokens


def _filled(path: str, value: str) -> str:
    parts = path.split("/")
    return "/".join(quote(value, safe="") or "x" if p.startswith("{") else p for p in parts)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_no_hostile_request_makes_a_server_error(
    setup: tuple[TestClient, dict[Role, str]], data: st.DataObject
) -> None:
    client, tokens = setup
    routes = sorted(
        (p, m)
        for p, methods in http_routes(client.app)
        for m in methods
        if m in ("GET", "POST") and p != "/desk/signout"
    )
    path, method = data.draw(st.sampled_from(routes))
    url = _filled(path, data.draw(HOSTILE))
    fields: dict[str, Any] = {
        name: data.draw(HOSTILE)
        for name in data.draw(st.lists(st.sampled_from(NAMES), max_size=5, unique=True))
    }
    role = Role.ADMIN if path.startswith("/users") else Role.DPO
    headers = {"Authorization": f"Bearer {tokens[role]}"}
    if method == "GET":
        response = client.get(url, params=fields, headers=headers)
    elif path.startswith("/desk"):
        response = client.post(url, data=fields)
    else:
        body = data.draw(st.sampled_from(["json", "raw"]))
        if body == "json":
            response = client.post(url, json=fields, headers=headers)
        else:
            raw = data.draw(HOSTILE).encode("utf-8", "surrogatepass")
            response = client.post(
                url, content=raw, headers={**headers, "Content-Type": "application/json"}
            )
    assert response.status_code < 500, f"{method} {url} {fields}: {response.text[:300]}"
