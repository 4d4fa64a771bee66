"""Who may use the desk, for how long: tokens expire, are revoked and rotated; desk
sessions live on the server and end at sign-out; every change is in the ledger's chain."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.reading.queries import Filters, entries
from pipeline.ledger.storage.store import Ledger
from pipeline.policy.pack import Policy
from pipeline.users import (
    BadName,
    NoLongerValid,
    NotBorneOut,
    Role,
    UserExists,
    add_user,
    revoke_user,
    rotate_user,
    users,
)
from tests.integration.breaches import breach_desk, ledger_with_breaches
from tests.integration.serving import served
from tests.integration.test_ledger_cli import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def ledger(sqlite_url: str, policy: Policy) -> Ledger:
    return ledger_with_breaches(sqlite_url, policy)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_entries(ledger: Ledger) -> list[Mapping[str, Any]]:
    with ledger.engine.connect() as connection:
        return [e.details or {} for e in entries(connection, Filters(kind="user_action"))]


def test_an_expired_token_is_refused(ledger: Ledger) -> None:
    token = add_user(ledger, "temp", Role.AUDITOR, expires_at="2099-01-01T00:00:00.000000Z")
    client = TestClient(breach_desk(ledger))
    assert client.get("/incidents", headers=bearer(token)).status_code == 200
    with ledger.engine.begin() as connection:
        connection.execute(
            text("UPDATE app_user SET expires_at = '2000-01-01' WHERE name = 'temp'")
        )
    assert client.get("/incidents", headers=bearer(token)).status_code == 401


def test_revoke_and_rotate_at_the_command_line_end_the_old_token(
    ledger: Ledger, sqlite_url: str
) -> None:
    client = TestClient(breach_desk(ledger))
    first = run("users", "add", "dana", "--role", "dpo", "--expires", "30d", "--db", sqlite_url)
    token = first.stdout.strip()
    assert client.get("/incidents", headers=bearer(token)).status_code == 200
    rotated = run("users", "rotate", "dana", "--db", sqlite_url).stdout.strip()
    assert client.get("/incidents", headers=bearer(token)).status_code == 401
    assert client.get("/incidents", headers=bearer(rotated)).status_code == 200
    assert run("users", "revoke", "dana", "--db", sqlite_url).returncode == 0
    assert client.get("/incidents", headers=bearer(rotated)).status_code == 401
    assert run("users", "revoke", "nobody", "--db", sqlite_url).returncode == 1
    past = run(
        "users", "add", "old", "--role", "dpo", "--expires", "2001-01-01", "--db", sqlite_url
    )
    assert past.returncode == 2 and "in the past" in past.stderr


def test_every_change_to_users_is_in_the_chain_and_no_token_is(ledger: Ledger) -> None:
    admin = add_user(ledger, "root", Role.ADMIN, by="installer")
    client = TestClient(breach_desk(ledger))
    made = client.post("/users", json={"name": "aud", "role": "auditor"}, headers=bearer(admin))
    token = made.json()["token"]
    client.post("/users/aud/rotate", headers=bearer(admin))
    assert client.post("/users/aud/revoke", headers=bearer(admin)).status_code == 204
    details = user_entries(ledger)
    assert [(d["action"], d["user"], d["by"]) for d in details] == [
        ("add", "root", "installer"),
        ("add", "aud", "root"),
        ("rotate", "aud", "root"),
        ("revoke", "aud", "root"),
    ]
    assert token not in str(details)
    with ledger.engine.connect() as connection:
        assert verify(connection).ok


def test_the_desk_cookie_is_a_session_that_sign_out_ends(ledger: Ledger) -> None:
    token = add_user(ledger, "dpo", Role.DPO)
    client = TestClient(breach_desk(ledger), follow_redirects=False)
    assert client.post("/desk/signin", data={"token": token}).status_code == 303
    session = client.cookies.get("sharing_audit_session")
    assert session and session != token
    assert client.get("/desk").status_code == 200
    client.get("/desk/signout")
    copied = TestClient(breach_desk(ledger), follow_redirects=False)
    copied.cookies.set("sharing_audit_session", session)
    assert copied.get("/desk").status_code == 303  # the copy of the cookie is dead too


def test_revoking_a_user_ends_their_desk_sessions(ledger: Ledger, sqlite_url: str) -> None:
    token = add_user(ledger, "dpo", Role.DPO)
    client = TestClient(breach_desk(ledger), follow_redirects=False)
    client.post("/desk/signin", data={"token": token})
    assert client.get("/desk").status_code == 200
    assert run("users", "revoke", "dpo", "--db", sqlite_url).returncode == 0
    assert client.get("/desk").status_code == 303


@pytest.mark.parametrize("https", [False, True])
def test_the_cookie_is_secure_when_the_proxy_says_https(ledger: Ledger, https: bool) -> None:
    """Served as `serve` serves it: uvicorn believes X-Forwarded-Proto from the allowed
    proxy addresses (--forwarded-allow-ips), and the cookie follows."""
    import httpx

    token = add_user(ledger, "dpo", Role.DPO)
    with served(breach_desk(ledger)) as address:
        headers = {"X-Forwarded-Proto": "https"} if https else {}
        answer = httpx.post(f"{address}/desk/signin", data={"token": token}, headers=headers)
    cookie = answer.headers["set-cookie"]
    assert ("Secure" in cookie) is https
    assert ("strict-transport-security" in answer.headers) is https


def test_rotate_keeps_the_tokens_expiry_unless_given_another(ledger: Ledger) -> None:
    add_user(ledger, "temp", Role.DPO, expires_at="2099-01-01T00:00:00.000000Z")
    rotate_user(ledger, "temp", by="admin")
    assert expiry_of(ledger, "temp") == "2099-01-01T00:00:00.000000Z"
    rotate_user(ledger, "temp", by="admin", expires_at="2098-01-01T00:00:00.000000Z")
    assert expiry_of(ledger, "temp") == "2098-01-01T00:00:00.000000Z"
    assert [d["state"]["expires_at"] for d in user_entries(ledger)] == [
        "2099-01-01T00:00:00.000000Z",
        "2099-01-01T00:00:00.000000Z",
        "2098-01-01T00:00:00.000000Z",
    ]


def expiry_of(ledger: Ledger, name: str) -> str | None:
    with ledger.engine.connect() as connection:
        return next(u.expires_at for u in users(connection) if u.name == name)


def test_rotate_does_not_bring_a_revoked_user_back(ledger: Ledger, sqlite_url: str) -> None:
    token = add_user(ledger, "gone", Role.DPO)
    revoke_user(ledger, "gone", by="admin")
    with pytest.raises(NoLongerValid, match="'gone' was revoked"):
        rotate_user(ledger, "gone", by="admin")
    done = run("users", "rotate", "gone", "--db", sqlite_url)
    assert done.returncode == 1 and "'gone' was revoked" in done.stderr
    assert "Traceback" not in done.stderr
    assert (
        TestClient(breach_desk(ledger)).get("/incidents", headers=bearer(token)).status_code == 401
    )
    assert [d["action"] for d in user_entries(ledger)] == ["add", "revoke"]


def test_rotating_an_expired_token_takes_a_new_expiry(ledger: Ledger) -> None:
    add_user(ledger, "late", Role.DPO, expires_at="2001-01-01T00:00:00.000000Z")
    with pytest.raises(NoLongerValid, match="expired at 2001-01-01"):
        rotate_user(ledger, "late", by="admin")
    token = rotate_user(ledger, "late", by="admin", expires_at="2099-01-01T00:00:00.000000Z")
    assert (
        TestClient(breach_desk(ledger)).get("/incidents", headers=bearer(token)).status_code == 200
    )


def test_rotate_refuses_a_user_whose_row_the_ledger_does_not_bear_out(ledger: Ledger) -> None:
    """Else the rotation would record the row's forged role as the ledger's own."""
    add_user(ledger, "aud", Role.AUDITOR, schools=["100001"])
    with ledger.engine.begin() as connection:
        connection.execute(text("UPDATE app_user SET role = 'admin' WHERE name = 'aud'"))
    with pytest.raises(NotBorneOut, match="role admin, but the ledger"):
        rotate_user(ledger, "aud", by="admin")
    assert [d["action"] for d in user_entries(ledger)] == ["add"]


@pytest.mark.parametrize("taken", ["Dana Smith", "dana smith", "DANA  SMITH", "danasmith"])
def test_a_name_differing_from_a_users_only_by_case_or_spaces_is_refused(
    ledger: Ledger, sqlite_url: str, taken: str
) -> None:
    add_user(ledger, "Dana Smith", Role.DPO)
    with pytest.raises(UserExists, match="'Dana Smith' already exists"):
        add_user(ledger, taken, Role.ADMIN)
    done = run("users", "add", "dana SMITH", "--role", "admin", "--db", sqlite_url)
    assert done.returncode == 1
    assert "'Dana Smith' already exists" in done.stderr and "only by case or spaces" in done.stderr
    assert [d["user"] for d in user_entries(ledger)] == ["Dana Smith"]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        (" dana", "begins or ends with a space"),
        ("dana ", "begins or ends with a space"),
        ("", "begins or ends with a space"),
        ("da\tna", "control character (U+0009)"),
        ("dana\x7f", "control character (U+007F)"),
        ("da\u200bna", "control character (U+200B)"),
        ("da\u202ena", "control character (U+202E)"),
    ],
)
def test_a_name_with_spaces_at_its_ends_or_a_control_character_is_refused(
    ledger: Ledger, sqlite_url: str, name: str, says: str
) -> None:
    with pytest.raises(BadName, match=re.escape(says)):
        add_user(ledger, name, Role.DPO)
    done = run("users", "add", name, "--role", "dpo", "--db", sqlite_url)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
    assert user_entries(ledger) == []


def test_the_api_refuses_a_name_with_spaces_at_its_ends(ledger: Ledger) -> None:
    admin = add_user(ledger, "root", Role.ADMIN)
    client = TestClient(breach_desk(ledger))
    made = client.post("/users", json={"name": "root ", "role": "admin"}, headers=bearer(admin))
    assert made.status_code == 422 and "space" in made.text
    made = client.post("/users", json={"name": "ROOT", "role": "admin"}, headers=bearer(admin))
    assert made.status_code == 409 and "only by case" in made.text
