"""Storage per entry: payloads deflated; PostgreSQL keeps digests and pseudonyms as bytes.

Each event payload becomes what :func:`pipeline.ledger.records.payloads.packed_payload` makes of
its text (deflated against a dictionary of the contract's words: about a third of the
text), with its ``data.oldest_record`` kept beside it (``oldest_record``) for the
retention check's SQL, on both databases. The payload table's append-only trigger is
set aside for the rewrite of its rows, and back before the transaction ends.

The chain's hashes, each entry's payload digest and policy version, and the pupil
index's pseudonyms are SHA-256-sized hex text: 65 bytes each in a row or an index
entry, where the 32 bytes they spell take 33. Each such column becomes ``bytea``, holding
what :func:`pipeline.ledger.storage.models.packed_digest` makes (the 32 bytes of 64 lowercase
hex digits; any other text as its UTF-8 after one or two ``0xff`` bytes, so that every
value reads back exactly as written). Readers still see hex text: the columns' type
(:class:`pipeline.ledger.storage.models.Digest`) unpacks it.

The tables are rewritten by ``ALTER TABLE`` (no row trigger fires: nothing is updated
row by row, and the append-only triggers stay), with their indexes, in the upgrade's
transaction. SQLite keeps the text (see ``Digest``).

Space given back: PostgreSQL's payload table is rewritten (``CLUSTER``) once its rows
are; a SQLite file keeps its size, its freed pages zeroed (``secure_delete``) and used
again by the entries that follow (``VACUUM`` gives them back to the file system).

Revision ID: 0015
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Connection

from pipeline.ledger.records.payloads import oldest_record_of, packed_payload

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: The columns kept as raw bytes on PostgreSQL, by table.
PACKED = {
    "ledger_entry": ("prev_hash", "hash", "payload_digest", "policy_version"),
    "entry_pupil": ("pupil_key",),
}


def _packed(column: str) -> str:
    """``packed_digest`` in SQL, for the rows already written (``0xff`` spelt without a
    backslash, which ``standard_conforming_strings = off`` would take for an escape)."""
    utf8 = f"convert_to({column}, 'UTF8')"
    return (
        f"CASE WHEN {column} ~ '^[0-9a-f]{{64}}$' THEN decode({column}, 'hex') "
        f"WHEN octet_length({column}) = 31 THEN decode('ffff', 'hex') || {utf8} "
        f"ELSE decode('ff', 'hex') || {utf8} END"
    )


#: Payloads rewritten a statement.
_PAGE = 2_000


def upgrade() -> None:
    bind = op.get_bind()
    _deflate_payloads(bind)
    if bind.dialect.name != "postgresql":
        return
    for table, columns in PACKED.items():
        changes = ", ".join(f"ALTER COLUMN {c} TYPE bytea USING {_packed(c)}" for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")
        op.execute(f"ANALYZE {table}")


def _deflate_payloads(bind: Connection) -> None:
    postgres = bind.dialect.name == "postgresql"
    marker = "%s" if postgres else "?"
    op.execute("ALTER TABLE event_payload ADD COLUMN oldest_record TEXT")
    if postgres:
        op.execute("ALTER TABLE event_payload ADD COLUMN packed BYTEA")
        op.execute("ALTER TABLE event_payload DISABLE TRIGGER event_payload_no_change")
        target = "packed"
    else:
        trigger = bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' "
            "AND name = 'event_payload_no_update'"
        ).scalar_one()
        op.execute("DROP TRIGGER event_payload_no_update")
        target = "body"
    last = 0
    while True:
        page = bind.exec_driver_sql(
            f"SELECT seq, body FROM event_payload WHERE seq > {marker} ORDER BY seq LIMIT {_PAGE}",
            (last,),
        ).all()
        if not page:
            break
        bind.exec_driver_sql(
            f"UPDATE event_payload SET {target} = {marker}, oldest_record = {marker} "
            f"WHERE seq = {marker}",
            [(packed_payload(body), oldest_record_of(body), seq) for seq, body in page],
        )
        last = page[-1][0]
    if postgres:
        op.execute("ALTER TABLE event_payload DROP COLUMN body")
        op.execute("ALTER TABLE event_payload RENAME COLUMN packed TO body")
        op.execute("ALTER TABLE event_payload ALTER COLUMN body SET NOT NULL")
        op.execute("ALTER TABLE event_payload ENABLE TRIGGER event_payload_no_change")
        op.execute("CLUSTER event_payload USING event_payload_pkey")
    else:
        op.execute(trigger)


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
