"""The ledger's schema revision as the commands check it, without importing Alembic."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from pipeline.ledger.storage import schema


def test_the_head_revision_is_the_one_alembic_finds() -> None:
    head = ScriptDirectory(str(schema.MIGRATIONS)).get_current_head()
    assert schema.head_revision() == head
