"""Building and checking the ledger's schema: always by the migrations, never create_all.

The append-only triggers exist only in the migrations (Alembic's autogenerate cannot see
triggers), so a schema built any other way would accept UPDATE and DELETE.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from pipeline.ledger.storage.dialects import dialect_of
from pipeline.ledger.storage.models import APPEND_ONLY_TABLES
from pipeline.ledger.storage.tree import build_missing

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
#: Where Alembic keeps the revision a database is at.
VERSION_TABLE = "alembic_version"


def _config() -> Config:
    # Alembic is imported only to migrate: every command opening a ledger checks its
    # revision, and importing Alembic took a tenth of each command's start-up.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, progress: Callable[[int, int], None] | None = None) -> str:
    """Bring the database to the latest schema, and build the Merkle tree over entries
    written before it existed (``progress(done, total)`` as it goes); the revision."""
    from alembic import command

    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    build_missing(engine, progress)
    return current_revision(engine) or ""


class SchemaNotReady(Exception):
    """The database holds no ledger, or one at an older schema than this code."""


def prepare(engine: Engine, create: bool = True) -> None:
    """Create the schema in an empty database (when ``create``); refuse an older one.

    A database at an older schema is not changed behind the user's back: that takes
    ``sharing-audit db upgrade``.
    """
    revision = current_revision(engine)
    if revision is None:
        if not create:
            raise SchemaNotReady("holds no ledger yet")
        upgrade(engine)
    elif revision != head_revision():
        raise SchemaNotReady(f"is at schema {revision}: run sharing-audit db upgrade")


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, as Alembic records it; None for no ledger."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def head_revision() -> str:
    """The newest migration's revision: the migrations run in one line, each file named
    for its revision (``0016_policy_entry_indexes.py`` is revision ``0016``), so the head
    is the greatest name (a test holds this to what Alembic finds)."""
    names = (p.name for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    return max(name[:4] for name in names)


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def append_only_triggers(engine: Engine) -> dict[str, list[str]]:
    """Table name to the names of the triggers on it, for the ledger's tables."""
    out: dict[str, list[str]] = {t: [] for t in APPEND_ONLY_TABLES}
    with engine.connect() as connection:
        rows = connection.execute(dialect_of(engine).triggers())
        for table, name in rows:
            if table in out and name not in out[table]:
                out[table].append(name)
    return out
