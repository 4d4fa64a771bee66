"""People scoped to schools: ``app_user.schools``, the URNs a user may see (a JSON list),
or NULL for every school of the deployment (the trust's DPO).

Revision ID: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("app_user", sa.Column("schools", sa.Text, nullable=True))


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
