"""The verifiable log: the Merkle tree's perfect subtrees, the checkpoints the log signs
and the witnesses' cosignatures, all append-only.

The tree of a ledger that already holds entries is built by ``sharing-audit db upgrade``
after this revision (``pipeline.ledger.storage.tree.build_missing``), with a progress bar: a
migration has no way to show one.

Revision ID: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("tree_node", "log_checkpoint", "log_cosignature")


def _refuse_changes(table: str) -> None:
    """As revision 0001 does for its tables: no UPDATE, DELETE or TRUNCATE."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END"
            )
    else:
        op.execute(
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION sharing_audit_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION sharing_audit_refuse_change()"
        )


def upgrade() -> None:
    seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "tree_node",
        sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sqlite_with_rowid=False,  # keyed by its primary key alone (revision 0006 says why)
    )
    op.create_table(
        "log_checkpoint",
        sa.Column("size", seq, primary_key=True, autoincrement=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("signed_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "log_cosignature",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.String(200), primary_key=True),
        sa.Column("line", sa.Text, nullable=True),
        sa.Column("refusal", sa.Text, nullable=True),
        sa.Column("at", sa.String(40), nullable=False),
        sqlite_with_rowid=False,
    )
    for table in TABLES:
        _refuse_changes(table)


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
