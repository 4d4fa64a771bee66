"""Audited reads: an index that finds the ``read`` entries among millions of decisions.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_entry_read",
        "ledger_entry",
        ["seq"],
        sqlite_where=sa.text("kind = 'read'"),
        postgresql_where=sa.text("kind = 'read'"),
    )


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
