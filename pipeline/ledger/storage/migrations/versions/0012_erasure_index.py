"""Erasures found among millions of entries: a partial index on the ``erasure`` entries.

A lifecycle fact about a pupil the ledger holds no identity for, at a school that erased
a pupil, may be about the erased pupil (see ``pipeline/ledger/writing/ingest.py``): the writer
asks which schools have erased anyone whenever a batch holds such a fact, and the
answer must not cost a scan of the ledger.

Revision ID: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_entry_erasure",
        "ledger_entry",
        ["seq"],
        sqlite_where=sa.text("kind = 'erasure'"),
        postgresql_where=sa.text("kind = 'erasure'"),
    )


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
