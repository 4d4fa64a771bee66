"""The alert outbox (breach and review alerts waiting for the relay to send them), and
the index on ``refers_to`` made partial.

Written in the same transaction as the ledger entries that raise them, so an alert exists
exactly when its decision does. It is not a ledger table: the relay marks each row
``sent``, or ``superseded`` when a later entry re-decided the event before it went out.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UNSENT = "relayed_at IS NULL"


def upgrade() -> None:
    # Only entries that refer to another need this index; as a full index, SQLite's
    # planner chose it for "refers_to IS NULL" (a scan of nearly every entry) over the
    # event-id index when looking up a batch's ids.
    op.drop_index("ix_entry_refers_to", "ledger_entry")
    op.create_index(
        "ix_entry_refers_to",
        "ledger_entry",
        ["refers_to"],
        sqlite_where=sa.text("refers_to IS NOT NULL"),
        postgresql_where=sa.text("refers_to IS NOT NULL"),
    )

    op.create_table(
        "alert_outbox",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("relayed_at", sa.String(40)),
        sa.Column("status", sa.String(12)),
    )
    op.create_index(
        "ix_alert_outbox_unsent",
        "alert_outbox",
        ["seq"],
        sqlite_where=sa.text(UNSENT),
        postgresql_where=sa.text(UNSENT),
    )


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
