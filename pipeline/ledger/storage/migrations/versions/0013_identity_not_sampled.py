"""PostgreSQL: the identity table's UPN, date of birth and MAC are never sampled into the
server's statistics.

``ANALYZE`` (autovacuum's, or an erasure's) copies sample values of each column into the
``pg_statistic`` catalog; an erased pupil's UPN would stay in that catalog's file until a
superuser vacuums it in full. With a statistics target of 0 the columns are not sampled:
lookups by UPN use the unique index whatever the statistics say. Existing statistics of
them are dropped by the ``ANALYZE`` that follows (the catalog's old rows then wait for
its vacuum, as before).

Revision ID: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

#: The columns that hold what erasure removes.
UNSAMPLED = ("upn", "dob", "mac")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in UNSAMPLED:
        op.execute(f"ALTER TABLE pupil_identity ALTER COLUMN {column} SET STATISTICS 0")
    op.execute("ANALYZE pupil_identity")


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
