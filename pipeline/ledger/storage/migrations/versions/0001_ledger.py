"""The ledger: entries, their indexes, the register, payloads, identities, chain head.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "0" * 64
APPEND_ONLY = ("ledger_entry", "entry_pupil", "entry_recipient", "register_fact", "event_payload")

ENTRY_UNIQUE_ID = "kind = 'decision' AND refers_to IS NULL AND event_id IS NOT NULL"
ENTRY_REUSED_ID = "kind = 'decision' AND refers_to IS NOT NULL"
ENTRY_UNKEYED = "kind = 'decision' AND event_id IS NULL"


def create_append_only_triggers(table: str) -> None:
    """Refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on ``table``.

    Kept in a function so that a later migration that rebuilds a table (SQLite batch
    mode drops triggers) can create them again.
    """
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
    _create_entries()
    _create_side_tables()
    head = op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    if op.get_bind().dialect.name != "sqlite":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION sharing_audit_refuse_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'restrict_violation';
            END $$
            """
        )
    for table in APPEND_ONLY:
        create_append_only_triggers(table)


def _create_entries() -> None:
    op.create_table(
        "ledger_entry",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("refers_to", sa.BigInteger),
        sa.Column("event_id", sa.String(128)),
        sa.Column("event_type", sa.String(80)),
        sa.Column("occurred_at", sa.String(40)),
        sa.Column("recorded_at", sa.String(40), nullable=False),
        sa.Column("school", sa.String(6)),
        sa.Column("recipient", sa.Text),
        sa.Column("pupil_keys", sa.Text, nullable=False),
        sa.Column("categories", sa.Text, nullable=False),
        sa.Column("lawful_basis", sa.String(40)),
        sa.Column("decision", sa.String(10)),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("policy_version", sa.String(64)),
        sa.Column("topic", sa.Text),
        sa.Column("partition", sa.Integer),
        sa.Column("offset", sa.BigInteger),
        sa.Column("payload_digest", sa.String(64)),
        sa.Column("details", sa.Text),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    for name, columns, where in (
        ("ux_entry_event_id", ["event_id"], ENTRY_UNIQUE_ID),
        ("ux_entry_reused_id", ["event_id", "payload_digest"], ENTRY_REUSED_ID),
        ("ux_entry_unkeyed", ["topic", "partition", "offset", "payload_digest"], ENTRY_UNKEYED),
    ):
        op.create_index(
            name,
            "ledger_entry",
            columns,
            unique=True,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )
    op.create_index("ix_entry_refers_to", "ledger_entry", ["refers_to"])
    op.create_index("ix_entry_occurred_at", "ledger_entry", ["occurred_at"])


def _create_side_tables() -> None:
    op.create_table(
        "entry_pupil",
        sa.Column("pupil_key", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
    )
    op.create_table(
        "entry_recipient",
        sa.Column("recipient", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
    )
    op.create_table(
        "register_fact",
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("pupil_key", sa.String(64), nullable=False),
        sa.Column("fact", sa.Text, nullable=False),
    )
    op.create_index("ix_register_fact_pupil_key", "register_fact", ["pupil_key"])
    op.create_table(
        "event_payload",
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "pupil_identity",
        sa.Column("pupil_key", sa.String(64), primary_key=True),
        sa.Column("upn", sa.String(13), nullable=False),
        sa.Column("dob", sa.String(10)),
    )


def downgrade() -> None:
    raise RuntimeError("the ledger is append-only: its schema is never downgraded")
