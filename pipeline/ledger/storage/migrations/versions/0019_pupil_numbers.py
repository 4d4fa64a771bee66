"""The pupil index filed under each pupil's number, not their pseudonym.

``entry_pupil`` held a row (pseudonym, seq) for each pupil each entry names: about 2.2
rows an entry (a census names every pupil of a school), each carrying the pupil's
32-byte pseudonym (64 characters on SQLite) in the table and again in its key's index.
Each pupil now has a number (``pupil``: number and pseudonym, numbered in the order the
ledger first named them), and ``entry_pupil`` rows are (number, seq): 4 bytes where 32
were. Nothing hashed changes: entries name their pupils by pseudonym as before, and the
index is rebuilt from them by ``ledger verify`` as before.

The index is rebuilt whole: ``pupil`` filled from its distinct pseudonyms, then a new
``entry_pupil`` from the old one joined to it, the old one dropped, and the append-only
triggers made again for both. On PostgreSQL the new tables are granted what the old
index was granted, so that a role set up by ``sharing-audit ledger grant`` keeps its
rights across the upgrade.

Revision ID: 0019
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_NUMBER = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_first = importlib.import_module("pipeline.ledger.storage.migrations.versions.0001_ledger")


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    granted = [] if sqlite else _grants(bind, "entry_pupil")
    key = sa.String(64) if sqlite else sa.LargeBinary()
    op.create_table(
        "pupil",
        # 64 bits (on SQLite the rowid): no number a row planted ahead can run out.
        sa.Column("id", _NUMBER, primary_key=True, autoincrement=False),
        sa.Column("pupil_key", key, nullable=False),
    )
    op.create_index("ux_pupil_key", "pupil", ["pupil_key"], unique=True)
    op.execute(
        "INSERT INTO pupil (id, pupil_key) "
        "SELECT row_number() OVER (ORDER BY min(seq)), pupil_key "
        "FROM entry_pupil GROUP BY pupil_key"
    )
    op.rename_table("entry_pupil", "entry_pupil_keyed")
    if not sqlite:
        op.execute(
            "ALTER TABLE entry_pupil_keyed "
            "RENAME CONSTRAINT entry_pupil_pkey TO entry_pupil_keyed_pkey"
        )
    op.create_table(
        "entry_pupil",
        sa.Column("pupil", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO entry_pupil (pupil, seq) SELECT p.id, e.seq "
        "FROM entry_pupil_keyed e JOIN pupil p ON p.pupil_key = e.pupil_key"
    )
    op.drop_table("entry_pupil_keyed")  # its triggers go with it
    for table in ("pupil", "entry_pupil"):
        _first.create_append_only_triggers(table)
        for grantee, privilege in granted:
            to = "PUBLIC" if grantee == "PUBLIC" else f'"{grantee}"'
            op.execute(f"GRANT {privilege} ON {table} TO {to}")


def _grants(bind: sa.Connection, table: str) -> list[tuple[str, str]]:
    """(role, privilege) of what other roles than the owner were granted on ``table``."""
    rows = bind.exec_driver_sql(
        "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
        "WHERE table_schema = current_schema() AND table_name = %(t)s AND grantee <> current_user",
        {"t": table},
    )
    return [(str(grantee), str(privilege)) for grantee, privilege in rows]


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
