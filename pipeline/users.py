"""Who may do what: users with a role, each holding a bearer token.

A token is shown once, when the user is added, and kept only as its SHA-256: tokens are
32 random bytes, so a plain hash is enough to make a stolen database useless for signing
in. Roles: ``dpo`` (reads, acts on incidents), ``auditor`` (reads and exports), ``admin``
(reads, manages users). A user may be confined to some of the deployment's schools
(``schools``, their URNs; none: every school, for the trust's DPO): they then see only
those schools' entries, pupils, incidents and reports, and another school's answer as if
it did not exist. A token may expire (``expires_at``) and can be revoked or rotated;
the desk's pages use server-side sessions, never the token, in their cookie. Every change
to users is an entry in the ledger's chain.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import orjson
from sqlalchemy import Connection, text

from pipeline.ledger.acts import append_act
from pipeline.ledger.errors import LedgerRefused
from pipeline.ledger.store import Ledger, now_text, utc_text


class Role(StrEnum):
    DPO = "dpo"
    AUDITOR = "auditor"
    ADMIN = "admin"


class UserExists(Exception):
    """A user of that name already exists."""


class UnknownUser(Exception):
    """No user of that name."""


#: The kind of the ledger entry that records a change to who may use the desk.
USER_KIND = "user_action"
#: How long a desk session lasts before its holder must sign in again.
SESSION_HOURS = 12


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    expires_at: str | None = None
    revoked_at: str | None = None
    schools: frozenset[str] | None = None  # None: every school

    @property
    def scope(self) -> tuple[str, ...] | None:
        """The user's schools, sorted, for a query; None for every school."""
        return None if self.schools is None else tuple(sorted(self.schools))


def _schools_of(text_value: str | None) -> frozenset[str] | None:
    return None if text_value is None else frozenset(orjson.loads(text_value))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return "sa_" + secrets.token_urlsafe(32)


def _record(ledger: Ledger, action: str, user: str, by: str, **more: str | None) -> None:
    """Every change to users is an entry in the chain: who, what, by whom; no token."""
    details = {"action": action, "user": user, "by": by, **{k: v for k, v in more.items() if v}}
    append_act(ledger, USER_KIND, details)


def add_user(
    ledger: Ledger,
    name: str,
    role: Role,
    by: str = "admin",
    expires_at: str | None = None,
    schools: Sequence[str] = (),
) -> str:
    """Add a user; their token (shown now, never again). ``expires_at``: UTC text;
    ``schools``: the URNs they may see (none given: every school)."""
    token = _new_token()
    scope = orjson.dumps(sorted(set(schools))).decode() if schools else None
    try:
        with ledger.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO app_user (name, role, token_hash, created_at, expires_at, "
                    "schools) VALUES (:n, :r, :h, :c, :e, :s)"
                ),
                {
                    "n": name,
                    "r": role.value,
                    "h": token_hash(token),
                    "c": now_text(),
                    "e": expires_at,
                    "s": scope,
                },
            )
    except LedgerRefused:
        raise UserExists(f"a user named {name!r} already exists") from None
    _record(ledger, "add", name, by, role=role.value, expires_at=expires_at, schools=scope)
    return token


def _end_sessions_of(connection: Connection, name: str) -> None:
    connection.execute(
        text("UPDATE desk_session SET ended_at = :t WHERE user_name = :n AND ended_at IS NULL"),
        {"t": now_text(), "n": name},
    )


def revoke_user(ledger: Ledger, name: str, by: str) -> None:
    """End a user's token and every desk session of theirs, now."""
    with ledger.engine.begin() as connection:
        changed = connection.execute(
            text("UPDATE app_user SET revoked_at = :t WHERE name = :n AND revoked_at IS NULL"),
            {"t": now_text(), "n": name},
        ).rowcount
        _end_sessions_of(connection, name)
    if not changed:
        raise UnknownUser(f"no user named {name!r} holds a live token")
    _record(ledger, "revoke", name, by)


def rotate_user(ledger: Ledger, name: str, by: str, expires_at: str | None = None) -> str:
    """A new token for a user; the old one, and the sessions it opened, stop working."""
    token = _new_token()
    with ledger.engine.begin() as connection:
        changed = connection.execute(
            text(
                "UPDATE app_user SET token_hash = :h, expires_at = :e, revoked_at = NULL "
                "WHERE name = :n"
            ),
            {"h": token_hash(token), "e": expires_at, "n": name},
        ).rowcount
        _end_sessions_of(connection, name)
    if not changed:
        raise UnknownUser(f"no user named {name!r}")
    _record(ledger, "rotate", name, by, expires_at=expires_at)
    return token


_LIVE = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now)"


def user_for(connection: Connection, token: str) -> User | None:
    """The user holding ``token``, if it is theirs and neither expired nor revoked."""
    row = connection.execute(
        text(f"SELECT name, role, schools FROM app_user WHERE token_hash = :h AND {_LIVE}"),
        {"h": token_hash(token), "now": now_text()},
    ).first()
    return User(row[0], Role(row[1]), schools=_schools_of(row[2])) if row else None


def open_session(ledger: Ledger, user: User) -> str:
    """A desk session for ``user``: the cookie's value (kept only as its SHA-256)."""
    session = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with ledger.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO desk_session (id_hash, user_name, created_at, expires_at) "
                "VALUES (:h, :n, :c, :e)"
            ),
            {
                "h": token_hash(session),
                "n": user.name,
                "c": utc_text(now),
                "e": utc_text(now + timedelta(hours=SESSION_HOURS)),
            },
        )
    return session


def session_user(connection: Connection, session: str) -> User | None:
    """Whose desk session this is, while it and their token are live."""
    row = connection.execute(
        text(
            "SELECT u.name, u.role, u.schools FROM desk_session s "
            "JOIN app_user u ON u.name = s.user_name "
            "WHERE s.id_hash = :h AND s.ended_at IS NULL AND s.expires_at > :now AND "
            "u.revoked_at IS NULL AND (u.expires_at IS NULL OR u.expires_at > :now)"
        ),
        {"h": token_hash(session), "now": now_text()},
    ).first()
    return User(row[0], Role(row[1]), schools=_schools_of(row[2])) if row else None


def end_session(ledger: Ledger, session: str) -> None:
    with ledger.engine.begin() as connection:
        connection.execute(
            text("UPDATE desk_session SET ended_at = :t WHERE id_hash = :h AND ended_at IS NULL"),
            {"t": now_text(), "h": token_hash(session)},
        )


def users(connection: Connection) -> list[User]:
    rows = connection.execute(
        text("SELECT name, role, expires_at, revoked_at, schools FROM app_user ORDER BY name")
    )
    return [User(r[0], Role(r[1]), r[2], r[3], _schools_of(r[4])) for r in rows]
