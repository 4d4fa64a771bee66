"""Where each incident's notifications (webhooks, email) have gone, and whether they
arrived. Operational, not a ledger table: a failed delivery is retried and its row
updated.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incident_notice",
        sa.Column("incident_id", sa.BigInteger, primary_key=True),
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("target", sa.String(500), primary_key=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
