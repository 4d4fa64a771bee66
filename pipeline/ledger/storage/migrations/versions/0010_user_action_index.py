"""Users rebuilt from the ledger: an index that finds the ``user_action`` entries among
millions, so that the desk checks a user's row against their entries on every request.

Revision ID: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_entry_user_action",
        "ledger_entry",
        ["seq"],
        sqlite_where=sa.text("kind = 'user_action'"),
        postgresql_where=sa.text("kind = 'user_action'"),
    )


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
