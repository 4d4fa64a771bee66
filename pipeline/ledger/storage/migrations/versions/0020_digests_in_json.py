"""PostgreSQL keeps the digests an entry's pupils and details quote as bytes.

An entry's ``pupil_keys`` is a JSON list of pseudonyms (64 hex digits each: a census
return names every pupil of a school), and nearly every entry's ``details`` quotes the
digest of a row beside it. Each such quoted digest took 66 bytes. Both columns become
``bytea`` holding what :func:`pipeline.ledger.storage.models.packed_json` makes of the
text: a format byte (``0x01``), then its UTF-8, each quoted digest as ``0xff`` and its
32 bytes (UTF-8 never holds ``0xff``). Readers still see the text, byte for byte
(:class:`pipeline.ledger.storage.models.DigestJson` unpacks it), so every hash still
covers what it covered.

The rows written before are packed in SQL by a function made for the upgrade and
dropped after it, the same as ``packed_json`` (a test compares the two on awkward
texts), while ``ALTER TABLE`` rewrites the table with its indexes in the upgrade's
transaction (no row trigger fires; the append-only triggers stay). Readers and writers
wait for it. SQLite keeps the text.

A process of an earlier version still running after the upgrade would write these
columns as text, which ``bytea`` would take, mangling backslashes: so each column
refuses a value not beginning with the format byte (``CHECK``), as every JSON text
begins with ``[`` or ``{``. Such a process fails loudly and records nothing until it is
stopped and the new version started.

Revision ID: 0020
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

#: The columns packed, in ``ledger_entry``.
PACKED = ("pupil_keys", "details")

#: ``packed_json`` in SQL: the text cut into quoted digests, runs without a quote, and
#: lone quotes (so a digest is taken wherever the Python pattern, read from the left,
#: takes one), each digest packed, the rest kept as UTF-8, joined in order. In the
#: ledger's own schema, where the upgrade creates its tables: a temporary function would
#: need the TEMPORARY privilege, which a hardened database may not grant.
PACKED_JSON = r"""
CREATE FUNCTION sharing_audit_packed_json(t text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT decode('01', 'hex') || coalesce(string_agg(
    CASE WHEN part[1] ~ '^"[0-9a-f]{64}"$'
      THEN decode('ff', 'hex') || decode(substr(part[1], 2, 64), 'hex')
      ELSE convert_to(part[1], 'UTF8') END,
    decode('', 'hex') ORDER BY n), decode('', 'hex'))
  FROM regexp_matches(t, '"[0-9a-f]{64}"|[^"]+|"', 'g') WITH ORDINALITY AS cut(part, n)
$$
"""


def refusing_text(column: str) -> str:
    """The check refusing a value of ``column`` not beginning with the format byte: what
    a writer of an earlier version would store (its JSON text)."""
    return f"ADD CONSTRAINT ck_entry_{column}_packed CHECK (get_byte({column}, 0) = 1)"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(PACKED_JSON)
    changes = [f"ALTER COLUMN {c} TYPE bytea USING sharing_audit_packed_json({c})" for c in PACKED]
    changes += [refusing_text(c) for c in PACKED]
    op.execute(f"ALTER TABLE ledger_entry {', '.join(changes)}")
    op.execute("DROP FUNCTION sharing_audit_packed_json(text)")
    op.execute("ANALYZE ledger_entry")


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
