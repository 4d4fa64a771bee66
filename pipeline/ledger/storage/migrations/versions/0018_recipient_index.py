"""An auditor's search by recipient through an index on the entry's own column, in place
of a table of (recipient, seq) rows that repeated it.

The ``entry_recipient`` table held one row for each entry that names a recipient: the
entry's ``recipient`` (cut to 200 characters) and its ``seq``, beside the same column in
``ledger_entry``. An index on ``ledger_entry (recipient, seq)`` answers the same search,
a page at a time in seq order, without a second copy of every value (about 64 bytes an
entry on PostgreSQL, the table's heap), and without rows that ``ledger verify`` had to
check against the entries: the database keeps an index of the hashed column itself.

Revision ID: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_entry_recipient",
        "ledger_entry",
        ["recipient", "seq"],
        # The recipients an index entry holds (the contract's are 64 characters at most;
        # one recorded before that pattern could exceed PostgreSQL's 2.7 KB an entry).
        sqlite_where=sa.text("length(recipient) <= 200"),
        postgresql_where=sa.text("length(recipient) <= 200"),
    )
    op.drop_table("entry_recipient")


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
