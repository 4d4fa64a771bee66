"""Who may do what: users with a role, each holding a bearer token.

A token is shown once, when the user is added, and kept only as its SHA-256: tokens are
32 random bytes, so a plain hash is enough to make a stolen database useless for signing
in. Roles: ``dpo`` (reads, acts on incidents), ``auditor`` (reads and exports), ``admin``
(reads, manages users).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from pipeline.ledger.store import Ledger, now_text


class Role(StrEnum):
    DPO = "dpo"
    AUDITOR = "auditor"
    ADMIN = "admin"


class UserExists(Exception):
    """A user of that name already exists."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(ledger: Ledger, name: str, role: Role) -> str:
    """Add a user; their token (shown now, never again)."""
    token = "sa_" + secrets.token_urlsafe(32)
    try:
        with ledger.engine.begin() as connection:
            connection.execute(
                text("INSERT INTO app_user (name, role, token_hash, created_at) "
                     "VALUES (:n, :r, :h, :c)"),
                {"n": name, "r": role.value, "h": token_hash(token), "c": now_text()},
            )  # fmt: skip
    except IntegrityError:
        raise UserExists(f"a user named {name!r} already exists") from None
    return token


def user_for(connection: Connection, token: str) -> User | None:
    """The user holding ``token``, if any."""
    row = connection.execute(
        text("SELECT name, role FROM app_user WHERE token_hash = :h"), {"h": token_hash(token)}
    ).first()
    return User(row[0], Role(row[1])) if row else None


def users(connection: Connection) -> list[User]:
    rows = connection.execute(text("SELECT name, role FROM app_user ORDER BY name"))
    return [User(r[0], Role(r[1])) for r in rows]
