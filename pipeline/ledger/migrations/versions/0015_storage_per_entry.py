"""Storage per entry: PostgreSQL keeps digests and pseudonyms as their raw bytes.

The chain's hashes, each entry's payload digest and policy version, and the pupil
index's pseudonyms are SHA-256-sized hex text: 65 bytes each in a row or an index
entry, where the 32 bytes they spell take 33. Each such column becomes ``bytea``, holding
what :func:`pipeline.ledger.models.packed_digest` makes (the 32 bytes of 64 lowercase
hex digits; any other text as its UTF-8 after one or two ``0xff`` bytes, so that every
value reads back exactly as written). Readers still see hex text: the columns' type
(:class:`pipeline.ledger.models.Digest`) unpacks it.

The tables are rewritten by ``ALTER TABLE`` (no row trigger fires: nothing is updated
row by row, and the append-only triggers stay), with their indexes, in the upgrade's
transaction. SQLite keeps the text (see ``Digest``): nothing changes there.

Revision ID: 0015 (down_revision 0013 for now: 0014 is being written beside it)
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None

#: The columns kept as raw bytes on PostgreSQL, by table.
PACKED = {
    "ledger_entry": ("prev_hash", "hash", "payload_digest", "policy_version"),
    "entry_pupil": ("pupil_key",),
}


def _packed(column: str) -> str:
    """``packed_digest`` in SQL, for the rows already written."""
    return (
        f"CASE WHEN {column} ~ '^[0-9a-f]{{64}}$' THEN decode({column}, 'hex') "
        f"WHEN octet_length({column}) = 31 THEN '\\xffff'::bytea || convert_to({column}, 'UTF8') "
        f"ELSE '\\xff'::bytea || convert_to({column}, 'UTF8') END"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in PACKED.items():
        changes = ", ".join(f"ALTER COLUMN {c} TYPE bytea USING {_packed(c)}" for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")
        op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
