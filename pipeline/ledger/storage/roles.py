"""Least privilege on PostgreSQL: what the role workers and the desk connect as may do.

The migrations run as the schema's owner. Everyone else gets, per table, only the verbs
the code uses: the hashed tables may be read and appended to, never updated, deleted or
truncated; the operational tables (outbox, notices, users, sessions, the chain head's
lock) may be updated; the identity table may be erased. A role that owns nothing can
neither drop a trigger nor alter a table, so the append-only triggers hold even against
a stolen application password.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection

from pipeline.ledger.storage.models import APPEND_ONLY_TABLES

#: Table to the privileges the application role is granted on it.
GRANTS: dict[str, str] = {
    **dict.fromkeys(APPEND_ONLY_TABLES, "SELECT, INSERT"),
    "ledger_meta": "SELECT, INSERT",
    "chain_head": "SELECT, UPDATE",  # the writers' lock and the head they move
    "pupil_identity": "SELECT, INSERT, UPDATE, DELETE",  # a date of birth; erasure
    "alert_outbox": "SELECT, INSERT, UPDATE",
    # Projections kept on append: an event's current decision moves; an incident is
    # folded again when an alert of it is superseded.
    "current_decision": "SELECT, INSERT, UPDATE",
    "incident": "SELECT, INSERT, UPDATE, DELETE",
    "incident_alert": "SELECT, INSERT, DELETE",
    "incident_notice": "SELECT, INSERT, UPDATE, DELETE",
    "app_user": "SELECT, INSERT, UPDATE",
    "desk_session": "SELECT, INSERT, UPDATE",
    "alembic_version": "SELECT",
}
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class BadRole(ValueError):
    """Not a role name this command will put into SQL."""


def grant_statements(role: str) -> list[str]:
    """The statements giving ``role`` exactly :data:`GRANTS` (and nothing more)."""
    if not _ROLE.match(role):
        raise BadRole(f"{role!r}: a role name is lowercase letters, digits and _")
    tables = ", ".join(GRANTS)
    return [
        f"REVOKE ALL ON {tables} FROM {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        *(f"GRANT {verbs} ON {table} TO {role}" for table, verbs in GRANTS.items()),
    ]


def grant(connection: Connection, role: str) -> None:
    """Give ``role`` the application's privileges; run by the schema's owner."""
    for statement in grant_statements(role):
        connection.exec_driver_sql(statement)
