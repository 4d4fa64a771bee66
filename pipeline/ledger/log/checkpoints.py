"""The checkpoints this log signs: its key, signing a checkpoint when the tree has grown,
keeping every one it signed (append-only), and the witnesses' cosignatures of them.

A checkpoint is only worth something once it has left the building: the latest is also
written to ``SHARING_AUDIT_CHECKPOINT_DIR`` when set (a folder another party copies or
mounts read-only), and sent to witnesses (``pipeline.ledger.log.witnessing``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from pipeline.keyfiles import create_key_file, hex_key, key_file_for, key_in_file
from pipeline.ledger.storage.errors import LedgerError
from pipeline.ledger.storage.models import LogCheckpoint, LogCosignature
from pipeline.ledger.storage.store import Ledger, make_engine, now_text
from pipeline.ledger.storage.tree import root_at
from pipeline.transparency.note import (
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    new_private_key,
    sign_note,
)

CHECKPOINT = LogCheckpoint.__table__  # type: ignore[attr-defined]
COSIGNATURE = LogCosignature.__table__  # type: ignore[attr-defined]
LOG_KEY_SUFFIX = ".logkey"


class LogKeyError(Exception):
    """The log's signing key is missing, unreadable or malformed."""


def log_signer(
    configured: str | None, origin: str, database_url: str, may_create: bool = True
) -> Signer:
    """The log's signer: ``SHARING_AUDIT_LOG_KEY`` (64 hex characters) for any database;
    with SQLite and none set, the key kept beside the file, made on first use (0600)
    when ``may_create`` and the ledger has signed no checkpoint yet: a key made anew for
    a ledger that has would sign whatever history the file now holds, and auditors could
    not tell the new key's checkpoints from the log's."""
    if configured:
        return Signer(origin, hex_key(configured, "SHARING_AUDIT_LOG_KEY", LogKeyError))
    path = key_file_for(database_url, LOG_KEY_SUFFIX)
    if path is None:
        raise LogKeyError("set SHARING_AUDIT_LOG_KEY (64 hex characters) for a server database")
    if not path.exists():
        try:
            signed = has_signed(database_url)
        except (LedgerError, SQLAlchemyError) as exc:
            raise LogKeyError(
                f"no log key: {path} is missing, and whether the ledger signed checkpoints "
                f"with it cannot be read: {exc}"
            ) from None
        if signed:
            raise LogKeyError(
                f"no log key: this ledger's checkpoints were signed with the key {path}, "
                "which is missing; restore it, or set SHARING_AUDIT_LOG_KEY to the key "
                "they were signed with"
            )
        if not may_create:
            raise LogKeyError(f"no log key: {path} is missing")
        create_key_file(path, new_private_key())
    return Signer(origin, key_in_file(path, "the log key", LogKeyError))


def has_signed(database_url: str) -> bool:
    """Whether the SQLite ledger at ``database_url`` holds a checkpoint the log signed
    (False when there is no file, or no table of checkpoints, yet)."""
    database = make_url(database_url).database
    if not database or not Path(database).is_file():
        return False
    engine = make_engine(database_url)
    try:
        if not inspect(engine).has_table(CHECKPOINT.name):
            return False
        with engine.connect() as connection:
            return connection.execute(select(CHECKPOINT.c.size).limit(1)).first() is not None
    finally:
        engine.dispose()


@dataclass(frozen=True, slots=True)
class Signed:
    """A checkpoint the log signed, with the cosignatures witnesses returned for it."""

    checkpoint: Checkpoint
    note: bytes  # as the log signed it
    cosignatures: tuple[str, ...] = ()  # signature lines

    def with_cosignatures(self) -> bytes:
        """The note with every cosignature line after the log's own."""
        return self.note + "".join(self.cosignatures).encode()


def _signed(connection: Connection, size: int, note: str) -> Signed:
    lines = connection.execute(
        select(COSIGNATURE.c.line)
        .where(COSIGNATURE.c.size == size, COSIGNATURE.c.line.is_not(None))
        .order_by(COSIGNATURE.c.witness)
    ).scalars()
    parsed = Note.parse(note.encode())
    return Signed(Checkpoint.from_body(parsed.text), note.encode(), tuple(lines))


def latest(connection: Connection) -> Signed | None:
    """The largest checkpoint the log has signed, if any."""
    row = connection.execute(
        select(CHECKPOINT.c.size, CHECKPOINT.c.note).order_by(CHECKPOINT.c.size.desc()).limit(1)
    ).first()
    return None if row is None else _signed(connection, int(row.size), row.note)


def at_size(connection: Connection, size: int) -> Signed | None:
    row = connection.execute(
        select(CHECKPOINT.c.size, CHECKPOINT.c.note).where(CHECKPOINT.c.size == size)
    ).first()
    return None if row is None else _signed(connection, int(row.size), row.note)


def sign_if_grown(ledger: Ledger, signer: Signer, folder: str | None = None) -> Signed | None:
    """Sign a checkpoint of the tree as it is now, if it has grown since the last one the
    log signed, keep it, and write it to ``folder``; the new checkpoint, or None.

    Holds the chain-head lock while it reads the head, so that the root signed is the
    root of exactly the entries up to that size.
    """
    with ledger.locked() as connection:
        size, _ = Ledger.head(connection)
        last = latest(connection)
        if size == 0 or (last is not None and last.checkpoint.size >= size):
            return None
        if last is not None and not signs_after(last, signer):
            raise LogKeyError(
                f"the log key is not the key this ledger's checkpoints of {signer.name} were "
                f"signed with (the latest, of size {last.checkpoint.size}): restore that key, "
                "or, to rotate, give the new key a new origin"
            )
        checkpoint = Checkpoint(signer.name, size, root_at(connection, size))
        note = sign_note(checkpoint.body(), signer).encode()
        connection.execute(
            CHECKPOINT.insert().values(size=size, note=note.decode(), signed_at=now_text())
        )
    signed = Signed(checkpoint, note)
    if folder:
        publish_to_folder(signed, Path(folder))
    return signed


def signs_after(last: Signed, signer: Signer) -> bool:
    """Whether ``signer`` may sign the log's next checkpoint after ``last``: it signed
    ``last``, or ``last`` is of another origin (a rotated key goes with a new origin).
    Another key under the same origin would sign whatever history the database now holds,
    and auditors could not tell its checkpoints from the log's."""
    if last.checkpoint.origin != signer.name:
        return True
    try:
        return Note.parse(last.note).signed_by(signer.verifier)
    except NoteError:
        return False


def publish_to_folder(signed: Signed, folder: Path) -> None:
    """Replace ``folder/checkpoint`` with ``signed``, atomically: a reader never sees half."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".checkpoint-", dir=folder)
    with os.fdopen(fd, "wb") as out:
        out.write(signed.with_cosignatures())
    os.replace(temporary, folder / "checkpoint")


def record_cosignature(
    ledger: Ledger, size: int, witness: str, line: str | None, refusal: str | None = None
) -> None:
    """Keep a witness's answer to the checkpoint of ``size``: its cosignature line, or why
    it refused. The first answer of each witness for each size stands."""
    with ledger.engine.begin() as connection:
        known = connection.execute(
            select(COSIGNATURE.c.size).where(
                COSIGNATURE.c.size == size, COSIGNATURE.c.witness == witness
            )
        ).first()
        if known is None:
            connection.execute(
                COSIGNATURE.insert().values(
                    size=size, witness=witness, line=line, refusal=refusal, at=now_text()
                )
            )


def checkpoint_faults(
    connection: Connection, log: Verifier | None, after: int = 0
) -> list[tuple[int, str]]:
    """Checkpoints the log kept (of more than ``after`` entries) that its tree does not
    bear out: a root other than the tree's at that size, or (when ``log``, the verifier
    key, is given) a signature that is not the log's. Each as (the checkpoint's size,
    what is wrong)."""
    faults: list[tuple[int, str]] = []
    rows = connection.execute(
        select(CHECKPOINT.c.size, CHECKPOINT.c.note)
        .where(CHECKPOINT.c.size > after)
        .order_by(CHECKPOINT.c.size)
    )
    for size, text in rows:
        try:
            note = Note.parse(text.encode())
            checkpoint = Checkpoint.from_body(note.text)
        except NoteError as exc:
            faults.append((int(size), f"the checkpoint of size {size} is malformed: {exc}"))
            continue
        if log is not None and not note.signed_by(log):
            faults.append(
                (int(size), f"the checkpoint of size {size} is not signed by the log's key")
            )
        elif checkpoint.size != size or root_at(connection, size) != checkpoint.root:
            faults.append(
                (int(size), f"the checkpoint of size {size} names a root the entries do not have")
            )
    return faults
