"""What the ledger must know to refuse being misused: the fingerprint of its pseudonym key,
a MAC binding each identity row to its pseudonym, tokens that expire or are revoked, and
the desk's server-side sessions.

- ``ledger_meta``: named values about the ledger itself; ``pseudonym_key_fingerprint`` is
  recorded the first time a key is used with it, and any other key is then refused.
- ``side_rows_bound_from`` in ``ledger_meta``: the first seq whose register fact and
  event payload are bound into its hashed fields (``details.sides``); a side row at or
  after it that its entry does not vouch for was inserted behind the writer's back.
- ``pupil_identity.mac``: HMAC under the pseudonym key of the row's pseudonym, UPN and
  date of birth, so ``ledger verify`` finds a row edited behind the writer's back (a
  row written before this revision has none and is checked by its pseudonym alone).
- ``app_user.expires_at`` and ``revoked_at``: a token past either no longer signs in.
- ``desk_session``: a signed-in browser, by the SHA-256 of its cookie; it expires, and
  signing out ends it.

Revision ID: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_meta",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    # After the head: entries written before this revision vouch for no side row. Should
    # one already vouch (a ledger's rows copied under an older schema), from the first that
    # does: ledger verify holds a bound later than that to be moved to hide a row.
    op.execute(
        "INSERT INTO ledger_meta (name, value) "
        "SELECT 'side_rows_bound_from', CAST(COALESCE("
        "(SELECT MIN(seq) FROM ledger_entry WHERE details LIKE '%\"sides\"%'), seq + 1"
        ") AS VARCHAR(20)) FROM chain_head WHERE id = 1"
    )
    op.add_column("pupil_identity", sa.Column("mac", sa.String(64), nullable=True))
    op.add_column("app_user", sa.Column("expires_at", sa.String(40), nullable=True))
    op.add_column("app_user", sa.Column("revoked_at", sa.String(40), nullable=True))
    op.create_table(
        "desk_session",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(100), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("expires_at", sa.String(40), nullable=False),
        sa.Column("ended_at", sa.String(40), nullable=True),
    )


def downgrade() -> None:
    raise RuntimeError("the ledger's schema is never downgraded")
