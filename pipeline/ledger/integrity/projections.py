"""The projections beside the chain, rebuilt from the hashed entries and compared with
the rows (DESIGN invariant 10).

The pupil index (its rows filed under pupils' numbers) says which entries name whom; the
register facts' pupil column says whose facts the writer finds; the users' table says
who may sign in, as what, for which schools, until when. None of them is hashed, and the
application's own role may insert into the index and update the users: so each is
rebuilt here from what the entries hash, and every row that differs is named (table,
entry or user, what the ledger says and what the row says). ``ledger verify`` reports
them, and those of each event's current decision and the desk's incidents, which the
modules keeping them check (:mod:`pipeline.ledger.storage.decision_projection`,
:mod:`pipeline.ledger.storage.incident_projection`); the desk refuses a user whose row
the ledger does not bear out (:func:`row_differences`).

A user's state is folded from their ``user_action`` entries. Entries written since this
module record the whole state after each change (``details["state"]``: role, schools,
expiry, whether revoked, and the SHA-256 of the token's stored hash); older entries name
only what changed, and are folded as the code of their day applied them: an ``add`` its
role, schools and expiry, a ``rotate`` the expiry it set (none given: none) clearing any
revocation, a ``revoke``. An older user's token is bound once they are rotated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import Connection, String, func, literal_column, select

from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.decision_projection import current_decision_faults
from pipeline.ledger.storage.incident_projection import incident_faults
from pipeline.ledger.storage.models import AppUser, DeskSession, holds
from pipeline.ledger.storage.store import ENTRY, ENTRY_PUPIL, FACT, PUPILS

USERS = AppUser.__table__  # type: ignore[attr-defined]
SESSIONS = DeskSession.__table__  # type: ignore[attr-defined]
#: The kind of the ledger entry that records a change to who may use the desk.
#: The action of a ``user_action`` entry recording a sign-in to the desk (it changes no
#: user's state: it binds their session's row).
SIGNIN = "signin"
#: Entries rebuilt at a time: the index rows of a window are held in memory, never a year's.
WINDOW = 20_000
_PAGE = 5_000


def projection_faults(connection: Connection) -> list[tuple[int, str]]:
    """(seq, what differs) for every index row, register fact's pupil, user, current
    decision and incident that the entries do not bear out; a user the ledger never
    recorded is named after the head."""
    return (
        index_faults(connection)
        + fact_pupil_faults(connection)
        + user_faults(connection)
        + current_decision_faults(connection)
        + incident_faults(connection)
    )


# -- indexes -----------------------------------------------------------------------------


def index_faults(connection: Connection) -> list[tuple[int, str]]:
    """Each row of ``entry_pupil`` that no entry makes (or that files an entry under a
    number no pupil has), and each that an entry makes but is not there, at the entry's
    seq; then each pupil's number that no row of the index uses, after the last entry (a
    number planted ahead would be given to the next pupil the ledger names)."""
    top = max(
        connection.execute(select(func.max(t.c.seq))).scalar() or 0 for t in (ENTRY, ENTRY_PUPIL)
    )
    faults: list[tuple[int, str]] = []
    for start in range(1, top + 1, WINDOW):
        faults += _window_index_faults(connection, start, start + WINDOW)
    unused = select(PUPILS.c.id, PUPILS.c.pupil_key).where(
        ~select(ENTRY_PUPIL.c.seq).where(ENTRY_PUPIL.c.pupil == PUPILS.c.id).exists()
    )
    for number, key in connection.execute(unused.order_by(PUPILS.c.id)):
        faults.append(
            (
                top + 1,
                f"pupil: number {number} is given to pupil {key!r}, whom no entry names "
                "(the row was inserted)",
            )
        )
    return faults


def _window_index_faults(connection: Connection, start: int, end: int) -> list[tuple[int, str]]:
    pupils: set[tuple[str, int]] = set()
    present: set[int] = set()
    rows = select(ENTRY.c.seq, ENTRY.c.pupil_keys).where(ENTRY.c.seq >= start, ENTRY.c.seq < end)
    for seq, keys in connection.execute(rows.execution_options(yield_per=_PAGE)):
        present.add(seq)
        if keys != "[]":
            pupils.update((key, seq) for key in _listed(keys))
    # Every row of the window, with the pseudonym its number stands for (None: no pupil
    # has that number).
    filed = (
        select(PUPILS.c.pupil_key, ENTRY_PUPIL.c.seq, ENTRY_PUPIL.c.pupil)
        .select_from(ENTRY_PUPIL.outerjoin(PUPILS, PUPILS.c.id == ENTRY_PUPIL.c.pupil))
        .where(ENTRY_PUPIL.c.seq >= start, ENTRY_PUPIL.c.seq < end)
    )
    stored: set[tuple[str, int]] = set()
    faults: list[tuple[int, str]] = []
    for key, seq, number in connection.execute(filed):
        if key is None:
            faults.append(
                (
                    seq,
                    f"entry_pupil: a row files pupil number {number} under seq {seq}, but no "
                    "pupil has that number (the row was inserted or changed)",
                )
            )
        else:
            stored.add((key, seq))
    return faults + _differences("entry_pupil", "pupil", pupils, stored, present)


def _differences(
    table: str,
    what: str,
    expected: set[tuple[str, int]],
    stored: set[tuple[str, int]],
    present: set[int],
) -> list[tuple[int, str]]:
    if stored == expected:  # nearly always: a set's comparison, in C
        return []
    faults: list[tuple[int, str]] = []
    for value, seq in stored - expected:
        if seq not in present:
            faults.append(
                (
                    seq,
                    f"{table}: a row files {what} {value!r} under seq {seq}, but the chain "
                    "holds no entry of that seq (the row was inserted)",
                )
            )
        else:
            faults.append(
                (
                    seq,
                    f"{table}: a row files {what} {value!r} under this entry, but the entry "
                    f"does not name that {what} (the row was inserted or changed)",
                )
            )
    for value, seq in expected - stored:
        faults.append(
            (
                seq,
                f"{table}: the entry names {what} {value!r}, but its row is missing "
                "(removed or changed)",
            )
        )
    return faults


def _listed(text: str | None) -> list[str]:
    """The strings of a stored JSON list; none from text the writer never wrote (the
    chain's check names that entry)."""
    try:
        value = orjson.loads(text or "[]")
    except orjson.JSONDecodeError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def fact_pupil_faults(connection: Connection) -> list[tuple[int, str]]:
    """Each register fact filed (``register_fact.pupil_key``, the column the writer finds
    a pupil's facts by) under another pupil than the fact itself, whose text its entry
    vouches for (:mod:`pipeline.ledger.integrity.sides`), is about."""
    faults: list[tuple[int, str]] = []
    rows = select(FACT.c.seq, FACT.c.pupil_key, FACT.c.fact).execution_options(yield_per=_PAGE)
    for seq, filed, fact in connection.execute(rows):
        try:
            about = orjson.loads(fact).get("pupil_key")
        except (orjson.JSONDecodeError, AttributeError):
            continue  # not what the writer wrote: the side check names it
        if about != filed:
            faults.append(
                (
                    seq,
                    f"register_fact: the row files its fact under pupil {filed!r}, but the "
                    f"fact its entry vouches for is about pupil {about!r}",
                )
            )
    return faults


# -- users -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserState:
    """What the ledger says of a user: the state their last ``user_action`` entry (``seq``)
    left them in. ``token``: the SHA-256 of their token's stored hash, when recorded."""

    role: str
    schools: tuple[str, ...] | None  # None: every school
    expires_at: str | None
    revoked: bool
    token: str | None
    seq: int

    def recorded(self) -> dict[str, Any]:
        """The state as a new entry records it (``details["state"]``)."""
        return {
            "role": self.role,
            "schools": None if self.schools is None else list(self.schools),
            "expires_at": self.expires_at,
            "revoked": self.revoked,
            "token": self.token,
        }


def token_binding(token_hash: str) -> str:
    """What the ledger records of a token: the SHA-256 of its stored hash. It binds the
    row's hash without putting into the chain (which auditors export) the value the row
    holds."""
    return hashlib.sha256(token_hash.encode()).hexdigest()


def schools_of(value: Any) -> tuple[str, ...] | None:
    """A user's schools, sorted, from a list or the JSON text of one; None: every school."""
    if isinstance(value, str):
        value = orjson.loads(value)
    return None if value is None else tuple(sorted(value))


def folded(state: UserState | None, seq: int, details: Mapping[str, Any]) -> UserState | None:
    """The user's state after the entry ``seq`` with these ``details``."""
    whole = details.get("state")
    if isinstance(whole, Mapping):
        return UserState(
            str(whole["role"]),
            schools_of(whole.get("schools")),
            whole.get("expires_at"),
            bool(whole.get("revoked")),
            whole.get("token"),
            seq,
        )
    action = details.get("action")  # an entry written before entries held the whole state
    if action == "add":
        schools = schools_of(details.get("schools"))
        return UserState(
            str(details.get("role")), schools, details.get("expires_at"), False, None, seq
        )
    if state is None:
        return None
    if action == "revoke":
        return replace(state, revoked=True, seq=seq)
    if action == "rotate":
        return replace(
            state, expires_at=details.get("expires_at"), revoked=False, token=None, seq=seq
        )
    return state


def user_entries(
    connection: Connection, name: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(seq, details) of the ``user_action`` entries, oldest first; of one user's alone
    when ``name`` is given (found by their name as the canonical details hold it)."""
    # The kind as a literal, never a parameter: a plan made for any kind (PostgreSQL's
    # generic plan for a prepared statement) could not use the partial index.
    kind = literal_column(f"'{EntryKind.USER_ACTION.value}'", String())
    statement = select(ENTRY.c.seq, ENTRY.c.details).where(ENTRY.c.kind == kind)
    if name is not None:
        named = '"user":' + orjson.dumps(name).decode()
        statement = statement.where(holds(ENTRY.c.details, named))
    for seq, details in connection.execute(statement.order_by(ENTRY.c.seq)):
        try:
            decoded = orjson.loads(details or "{}")
        except orjson.JSONDecodeError:
            continue  # not what the writer wrote: the chain's check names it
        if isinstance(decoded, dict) and (name is None or decoded.get("user") == name):
            yield seq, decoded


def signin_recorded(connection: Connection, session: str) -> dict[str, Any] | None:
    """The details of the sign-in entry that recorded the desk session ``session`` (the
    :func:`token_binding` of its row's hash); None if none did."""
    kind = literal_column(f"'{EntryKind.USER_ACTION.value}'", String())
    named = '"session":' + orjson.dumps(session).decode()
    statement = select(ENTRY.c.details).where(ENTRY.c.kind == kind, holds(ENTRY.c.details, named))
    for details in connection.execute(statement).scalars():
        decoded = orjson.loads(details)
        if decoded.get("action") == SIGNIN and decoded.get("session") == session:
            return dict(decoded)
    return None


def recorded_users(entries: Iterable[tuple[int, Mapping[str, Any]]]) -> dict[str, UserState]:
    """Each user's state, folded from ``user_action`` entries in seq order."""
    states: dict[str, UserState] = {}
    for seq, details in entries:
        user = details.get("user")
        if not isinstance(user, str):
            continue
        state = folded(states.get(user), seq, details)
        if state is not None:
            states[user] = state
    return states


def recorded_user(connection: Connection, name: str) -> UserState | None:
    """What the ledger says of the user ``name``; None if it never recorded them."""
    return recorded_users(user_entries(connection, name)).get(name)


def row_differences(row: Mapping[str, Any], state: UserState) -> list[str]:
    """How an ``app_user`` row differs from the ledger's ``state`` of its user, in words;
    empty when the ledger bears the row out."""
    said = f"the ledger (user_action seq {state.seq}) says"
    differences: list[str] = []
    if row["role"] != state.role:
        differences.append(f"role {row['role']}, but {said} {state.role}")
    schools = schools_of(row["schools"])
    if schools != state.schools:
        differences.append(f"schools {_schools(schools)}, but {said} {_schools(state.schools)}")
    if row["expires_at"] != state.expires_at:
        differences.append(
            f"expires {row['expires_at'] or 'never'}, but {said} {state.expires_at or 'never'}"
        )
    if (row["revoked_at"] is not None) != state.revoked:
        differences.append(
            f"revoked at {row['revoked_at']}, but {said} it is not"
            if row["revoked_at"] is not None
            else f"not revoked, but {said} it was revoked"
        )
    if state.token is not None and token_binding(row["token_hash"]) != state.token:
        differences.append(f"a token {said} was never given (its hash was replaced)")
    return differences


def _schools(schools: tuple[str, ...] | None) -> str:
    return "every school" if schools is None else ", ".join(schools) or "none"


def user_rows(connection: Connection, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The ``app_user`` rows (of ``names`` alone, when given), as mappings."""
    statement = select(
        USERS.c.name,
        USERS.c.role,
        USERS.c.schools,
        USERS.c.expires_at,
        USERS.c.revoked_at,
        USERS.c.token_hash,
    ).order_by(USERS.c.name)
    if names is not None:
        statement = statement.where(USERS.c.name.in_(names))
    return [dict(row) for row in connection.execute(statement).mappings()]


def user_faults(connection: Connection) -> list[tuple[int, str]]:
    """Each user whose row the ledger does not bear out, at their last ``user_action``
    entry; a row the ledger never recorded, after the chain's head."""
    states = recorded_users(user_entries(connection))
    rows = {row["name"]: row for row in user_rows(connection)}
    after = int(connection.execute(select(func.max(ENTRY.c.seq))).scalar() or 0) + 1
    faults: list[tuple[int, str]] = []
    for name, row in rows.items():
        state = states.get(name)
        if state is None:
            faults.append(
                (
                    after,
                    f"app_user: a row gives user {name!r} the role {row['role']}, but no "
                    "user_action entry records them (the row was inserted)",
                )
            )
        elif differences := row_differences(row, state):
            faults.append((state.seq, f"app_user: user {name!r} has " + "; ".join(differences)))
    for name, state in states.items():
        if name not in rows:
            faults.append(
                (
                    state.seq,
                    f"app_user: the ledger (user_action seq {state.seq}) records user "
                    f"{name!r}, but app_user has no row for them (the row was removed)",
                )
            )
    return faults
