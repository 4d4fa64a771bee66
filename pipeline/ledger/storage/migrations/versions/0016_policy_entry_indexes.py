"""Adoptions and published notices found among millions of entries: a partial index on
each kind.

Every writer, desk and worker follows the packs adopted (``pack_adopted``: see
``pipeline/ledger/writing/adoption.py``) from its first batch or request, and the notice check
reads the notices published (``notice_published``): neither must cost a scan of the
ledger.

Revision ID: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

KINDS = {"ix_entry_pack_adopted": "pack_adopted", "ix_entry_notice_published": "notice_published"}


def upgrade() -> None:
    for name, kind in KINDS.items():
        op.create_index(
            name,
            "ledger_entry",
            ["seq"],
            sqlite_where=sa.text(f"kind = '{kind}'"),
            postgresql_where=sa.text(f"kind = '{kind}'"),
        )


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
