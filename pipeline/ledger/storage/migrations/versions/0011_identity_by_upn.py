"""Pupils found by their identity row: a unique index on ``pupil_identity.upn``.

A new pupil's pseudonym is no longer made from their UPN under a key (see
``pipeline/ledger/writing/pupils.py``): it is drawn at random and found again through the
pupil's identity row, which erasing the pupil deletes. The index finds it, and refuses a
second row for one UPN (one pupil, one pseudonym, however many workers). Rows written
before this revision hold distinct UPNs already: their pseudonyms were one UPN's each.
A row with an empty UPN names no one to find; the index leaves such rows out.

Revision ID: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ux_identity_upn",
        "pupil_identity",
        ["upn"],
        unique=True,
        sqlite_where=sa.text("upn <> ''"),
        postgresql_where=sa.text("upn <> ''"),
    )


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
