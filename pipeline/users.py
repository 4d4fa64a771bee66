"""Who may do what: users with a role, each holding a bearer token.

A token is shown once, when the user is added, and kept only as its SHA-256: tokens are
32 random bytes, so a plain hash is enough to make a stolen database useless for signing
in. Roles: ``dpo`` (reads, acts on incidents), ``auditor`` (reads and exports), ``admin``
(reads, manages users). A user may be confined to some of the deployment's schools
(``schools``, their URNs; none: every school, for the trust's DPO): they then see only
those schools' entries, pupils, incidents and reports, and another school's answer as if
it did not exist. A token may expire (``expires_at``) and can be revoked or rotated;
the desk's pages use server-side sessions, never the token, in their cookie. Every change
to users is an entry in the ledger's chain, in the same transaction as the row, recording
the user's whole state after it; the desk believes a row only while those entries bear it
out (:mod:`pipeline.ledger.integrity.projections`), and ``ledger verify`` names every row
they do not.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Connection, and_, insert, or_, select, update

from pipeline.ledger.integrity.projections import (
    SESSIONS,
    SIGNIN,
    USERS,
    UserState,
    recorded_user,
    row_differences,
    signin_recorded,
    token_binding,
    user_rows,
)
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage.store import Ledger, NewEntry, now_text, utc_text
from pipeline.logging import get_logger

log = get_logger(__name__)


class Role(StrEnum):
    DPO = "dpo"
    AUDITOR = "auditor"
    ADMIN = "admin"


class UserExists(Exception):
    """A user of that name, or of a name differing from it only by case or spaces,
    already exists."""


class UnknownUser(Exception):
    """No user of that name (or none holding a live token)."""


class BadName(ValueError):
    """Not a name a user may have: spaces at either end, or a control character."""


class NotBorneOut(Exception):
    """The user's row says other than the ledger's entries (changed behind its back)."""


class NoLongerValid(Exception):
    """The user was revoked, or their token expired: rotating brings neither back."""


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


def checked_name(name: str) -> str:
    """``name``, if a user may have it: names are told apart by people reading the
    ledger and the desk, so none may hide a difference in spaces at its ends or in an
    invisible character."""
    if not name or name != name.strip():
        raise BadName(f"user name {name!r} begins or ends with a space (or is empty)")
    hidden = next(
        (c for c in name if unicodedata.category(c)[0] == "C" or c in "\u2028\u2029"), None
    )
    if hidden is not None:
        raise BadName(f"user name {name!r} holds a control character (U+{ord(hidden):04X})")
    return name


def _likeness(name: str) -> str:
    """What two names that a reader would take for one have in common."""
    return "".join(unicodedata.normalize("NFKC", name).split()).casefold()


def _refuse_lookalike(connection: Connection, name: str) -> None:
    likeness = _likeness(name)
    for row in user_rows(connection):
        found = row["name"]
        if found == name:
            raise UserExists(f"a user named {name!r} already exists")
        if _likeness(found) == likeness:
            raise UserExists(
                f"a user named {found!r} already exists: {name!r} differs from it only "
                "by case or spaces"
            )


def _append_change(
    ledger: Ledger,
    connection: Connection,
    action: str,
    name: str,
    by: str,
    state: UserState | None,
) -> None:
    """Every change to users is an entry in the chain, in the same transaction as the
    row: who, what, by whom, and the user's whole state after it (never the token; no
    state for a user the ledger never recorded)."""
    details: dict[str, Any] = {"action": action, "user": name, "by": by}
    if state is not None:
        details["state"] = state.recorded()
    _append_user_entry(ledger, connection, details)


def _append_user_entry(ledger: Ledger, connection: Connection, details: dict[str, Any]) -> None:
    """A ``user_action`` entry, appended in ``connection``'s transaction (which holds the
    chain-head lock: :meth:`Ledger.locked`), beside the row it vouches for."""
    head = Ledger.head(connection)[0]
    entry = Entry.act(head + 1, EntryKind.USER_ACTION, details, recorded_at=now_text())
    ledger.append(connection, [NewEntry(entry)])


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
    checked_name(name)
    token = _new_token()
    scope = sorted(set(schools)) or None
    hashed = token_hash(token)
    state = UserState(
        role.value, tuple(scope) if scope else None, expires_at, False, token_binding(hashed), 0
    )
    with ledger.locked() as connection:
        _refuse_lookalike(connection, name)
        connection.execute(
            insert(USERS).values(
                name=name,
                role=role.value,
                token_hash=hashed,
                created_at=now_text(),
                expires_at=expires_at,
                schools=orjson.dumps(scope).decode() if scope else None,
            )
        )
        _append_change(ledger, connection, "add", name, by, state)
    return token


def _end_sessions_of(connection: Connection, name: str) -> None:
    connection.execute(
        update(SESSIONS)
        .where(SESSIONS.c.user_name == name, SESSIONS.c.ended_at.is_(None))
        .values(ended_at=now_text())
    )


def _recorded(connection: Connection, name: str) -> tuple[dict[str, Any], UserState]:
    """The user's row and what the ledger says of them; :class:`UnknownUser` when either
    is missing."""
    rows = user_rows(connection, [name])
    state = recorded_user(connection, name)
    if not rows or state is None:
        if rows:
            raise NotBorneOut(f"no entry in the ledger records user {name!r}: run ledger verify")
        raise UnknownUser(f"no user named {name!r}")
    return rows[0], state


def revoke_user(ledger: Ledger, name: str, by: str) -> None:
    """End a user's token and every desk session of theirs, now. A user whose row was
    changed behind the ledger's back is revoked all the same."""
    with ledger.locked() as connection:
        try:
            _, state = _recorded(connection, name)
        except NotBorneOut:
            state = None
        changed = connection.execute(
            update(USERS)
            .where(USERS.c.name == name, USERS.c.revoked_at.is_(None))
            .values(revoked_at=now_text())
        ).rowcount
        _end_sessions_of(connection, name)
        if state is not None and not state.revoked:
            _append_change(ledger, connection, "revoke", name, by, replace(state, revoked=True))
        elif changed:  # a row no entry records: revoked, and still named by ledger verify
            _append_change(ledger, connection, "revoke", name, by, None)
        else:
            raise UnknownUser(f"no user named {name!r} holds a live token")


def rotate_user(ledger: Ledger, name: str, by: str, expires_at: str | None = None) -> str:
    """A new token for a user; the old one, and the sessions it opened, stop working. The
    token keeps its expiry unless ``expires_at`` gives another; a revoked user is not
    brought back, nor one whose row the ledger does not bear out."""
    token = _new_token()
    hashed = token_hash(token)
    with ledger.locked() as connection:
        row, state = _recorded(connection, name)
        if differences := row_differences(row, state):
            raise NotBorneOut(f"user {name!r} has " + "; ".join(differences))
        if state.revoked:
            raise NoLongerValid(f"user {name!r} was revoked: add them again, under a new name")
        expiry = expires_at if expires_at is not None else state.expires_at
        if expiry is not None and expiry <= now_text():
            raise NoLongerValid(f"the token of {name!r} expired at {expiry}: give a new expiry")
        connection.execute(
            update(USERS).where(USERS.c.name == name).values(token_hash=hashed, expires_at=expiry)
        )
        _end_sessions_of(connection, name)
        new = replace(state, expires_at=expiry, token=token_binding(hashed))
        _append_change(ledger, connection, "rotate", name, by, new)
    return token


_USER_FIELDS = ("name", "role", "schools", "expires_at", "revoked_at", "token_hash")


def _live_users(now: str) -> Any:
    """Users neither revoked nor expired at ``now``: each of their fields."""
    live = and_(
        USERS.c.revoked_at.is_(None), or_(USERS.c.expires_at.is_(None), USERS.c.expires_at > now)
    )
    return select(*(USERS.c[name] for name in _USER_FIELDS)).where(live)


def _borne_out(connection: Connection, row: Any) -> User | None:
    """The user of an ``app_user`` row, if the ledger's entries bear the row out; else
    None, logged: a row changed behind the ledger's back is never believed."""
    if row is None:
        return None
    found = {name: row._mapping[name] for name in _USER_FIELDS}
    state = recorded_user(connection, found["name"])
    if state is None or row_differences(found, state):
        log.warning("user_not_borne_out_by_ledger", user=found["name"], recorded=state is not None)
        return None
    return User(found["name"], Role(found["role"]), schools=_schools_of(found["schools"]))


def user_for(connection: Connection, token: str) -> User | None:
    """The user holding ``token``, if it is theirs, neither expired nor revoked, and
    their row is what the ledger says of them."""
    found = _live_users(now_text()).where(USERS.c.token_hash == token_hash(token))
    row = connection.execute(found).first()
    return _borne_out(connection, row)


def open_session(ledger: Ledger, user: User) -> str:
    """A desk session for ``user``: the cookie's value (kept only as its SHA-256). The
    sign-in is an entry in the chain, in the session row's transaction, binding the row
    (whose, until when), so that a row inserted or changed behind the ledger's back
    signs no one in."""
    session = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    hashed = token_hash(session)
    expires = utc_text(now + timedelta(hours=SESSION_HOURS))
    with ledger.locked() as connection:
        connection.execute(
            insert(SESSIONS).values(
                id_hash=hashed, user_name=user.name, created_at=utc_text(now), expires_at=expires
            )
        )
        details = {
            "action": SIGNIN,
            "user": user.name,
            "by": user.name,
            "session": token_binding(hashed),
            "expires_at": expires,
        }
        _append_user_entry(ledger, connection, details)
    return session


def session_user(connection: Connection, session: str) -> User | None:
    """Whose desk session this is, while it and their token are live, the ledger
    recorded its sign-in (by them, until then) and their row is what the ledger says of
    them."""
    hashed = token_hash(session)
    now = now_text()
    found = (
        _live_users(now)
        .add_columns(SESSIONS.c.expires_at.label("session_expires"))
        .join(SESSIONS, SESSIONS.c.user_name == USERS.c.name)
        .where(
            SESSIONS.c.id_hash == hashed, SESSIONS.c.ended_at.is_(None), SESSIONS.c.expires_at > now
        )
    )
    row = connection.execute(found).first()
    if row is None:
        return None
    signin = signin_recorded(connection, token_binding(hashed))
    if signin is None or (signin.get("user"), signin.get("expires_at")) != (
        row.name,
        row.session_expires,
    ):
        log.warning("session_not_borne_out_by_ledger", user=row.name, recorded=signin is not None)
        return None
    return _borne_out(connection, row)


def end_session(ledger: Ledger, session: str) -> None:
    with ledger.engine.begin() as connection:
        connection.execute(
            update(SESSIONS)
            .where(SESSIONS.c.id_hash == token_hash(session), SESSIONS.c.ended_at.is_(None))
            .values(ended_at=now_text())
        )


def users(connection: Connection) -> list[User]:
    rows = connection.execute(
        select(
            USERS.c.name, USERS.c.role, USERS.c.expires_at, USERS.c.revoked_at, USERS.c.schools
        ).order_by(USERS.c.name)
    )
    return [User(r[0], Role(r[1]), r[2], r[3], _schools_of(r[4])) for r in rows]
