"""What a witness holds: for each log it witnesses, the last checkpoint it cosigned; and
its own key. A database of its own (SQLite beside the witness by default), never the
logs' ledgers: a witness is run by someone other than the schools it watches."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    select,
)

from pipeline.keyfiles import create_key_file, hex_key, key_file_for, key_in_file
from pipeline.ledger.storage.errors import LedgerRefused
from pipeline.ledger.storage.store import make_engine, now_text
from pipeline.transparency.note import COSIGNATURE, Checkpoint, Signer, new_private_key
from pipeline.transparency.witness import Held

DEFAULT_WITNESS_DB = "sqlite:///sharing-audit-witness.db"
WITNESS_KEY_SUFFIX = ".witnesskey"
metadata = MetaData()
HELD = Table(
    "witnessed_log",
    metadata,
    Column("origin", String(300), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("checkpoint", Text, nullable=False),
    Column("updated_at", String(40), nullable=False),
)


class WitnessKeyError(Exception):
    """The witness's key is missing or malformed."""


def witness_engine(url: str) -> Engine:
    engine = make_engine(url)
    metadata.create_all(engine)
    return engine


def witness_signer(configured: str | None, name: str, url: str) -> Signer:
    """``SHARING_AUDIT_WITNESS_KEY`` (64 hex characters), else the key kept beside the
    witness's SQLite state, made on first use (0600)."""
    if configured:
        key = hex_key(configured, "SHARING_AUDIT_WITNESS_KEY", WitnessKeyError)
        return Signer(name, key, COSIGNATURE)
    path = key_file_for(url, WITNESS_KEY_SUFFIX)
    if path is None:
        raise WitnessKeyError("set SHARING_AUDIT_WITNESS_KEY (64 hex characters)")
    if not path.exists():
        create_key_file(path, new_private_key())
    return Signer(name, key_in_file(path, "the witness key", WitnessKeyError), COSIGNATURE)


def held(engine: Engine) -> dict[str, Held]:
    with engine.connect() as connection:
        rows = connection.execute(select(HELD.c.origin, HELD.c.size, HELD.c.root))
        return {r.origin: Held(int(r.size), bytes(r.root)) for r in rows}


def kept_note(engine: Engine, origin: str) -> str | None:
    """The note kept with the checkpoint last cosigned for ``origin``, if any."""
    with engine.connect() as connection:
        return connection.execute(
            select(HELD.c.checkpoint).where(HELD.c.origin == origin)
        ).scalar_one_or_none()


def keep(engine: Engine, before: Held, checkpoint: Checkpoint, note: bytes) -> bool:
    """Hold ``checkpoint`` for its log, ``note`` its signed form as served to monitors, if
    the witness still holds ``before`` for it (a compare-and-swap: two submissions at once
    cannot both move it); whether it did. At size 0 the root held is not compared: a row
    kept before size-0 checkpoints had to bear the empty tree's root must not jam the log."""
    values = {
        "size": checkpoint.size,
        "root": checkpoint.root,
        "checkpoint": note.decode(),
        "updated_at": now_text(),
    }
    with engine.begin() as connection:
        if before.size == 0:
            known = connection.execute(
                select(HELD.c.size).where(HELD.c.origin == checkpoint.origin)
            ).first()
            if known is None:
                try:
                    connection.execute(HELD.insert().values(origin=checkpoint.origin, **values))
                except LedgerRefused:
                    return False
                return True
        same = [HELD.c.origin == checkpoint.origin, HELD.c.size == before.size]
        if before.size:
            same.append(HELD.c.root == before.root)
        moved = connection.execute(HELD.update().where(*same).values(**values))
        return moved.rowcount == 1
