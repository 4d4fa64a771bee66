"""The breach desk's queue read a page at a time among hundreds of thousands of incidents.

The queue's first pages are the breaches whose ICO clock runs, least time left first:
read through an index on when each incident was detected, they stop after a page rather
than sort every incident. The schools the queue may be narrowed to are read from an
index on the school alone.

Revision ID: 0017
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_incident_detected_at", "incident", ["detected_at"])
    op.create_index("ix_incident_school", "incident", ["school"])


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
