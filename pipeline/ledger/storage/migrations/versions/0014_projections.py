"""Projections kept on append: each re-decided event's current decision, and the breach
desk's incidents with the alerts filed under them (DESIGN invariant 10, issue 33).

Until now the desk folded every alert ever raised on each request, and the readers of an
event's current decision each looked for its latest re-evaluation their own way. The
tables are filled here from the entries and the outbox already held, by the same fold
the append path keeps them by (:mod:`pipeline.ledger.storage.decision_projection`,
:mod:`pipeline.ledger.storage.incident_projection`); ``ledger verify`` checks them against it.

Revision ID: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.ledger.storage import decision_projection, incident_projection

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: A sequence number, the rowid on SQLite (as migration 0006 made the ledger's keys).
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "current_decision",
        sa.Column("event_seq", SEQ, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("decision", sa.String(10), nullable=True),
    )
    op.create_table(
        "incident",
        sa.Column("id", SEQ, primary_key=True, autoincrement=False),
        sa.Column("cause", sa.Text, nullable=False, unique=True),
        sa.Column("rule", sa.String(80), nullable=False),
        sa.Column("recipient", sa.Text, nullable=True),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("school", sa.String(6), nullable=True),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("breach", sa.Boolean, nullable=False),
        sa.Column("detected_at", sa.String(40), nullable=False),
        sa.Column("alerts", sa.Integer, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("last_alert", sa.BigInteger, nullable=False),
        sa.Column("actions", sa.Integer, nullable=False),
        sa.Column("last_action", sa.String(20), nullable=True),
        sa.Column("last_action_seq", sa.BigInteger, nullable=True),
        sa.Column("risk", sa.String(20), nullable=True),
    )
    op.create_table(
        "incident_alert",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
        sa.Column("incident", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_incident_alert_incident", "incident_alert", ["incident", "event_id"])
    connection = op.get_bind()
    decision_projection.rebuild(connection)
    incident_projection.rebuild(connection)


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
