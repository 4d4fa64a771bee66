"""What ``ledger verify`` can say of checkpoints, and what it cannot.

The checkpoints a ledger keeps are checked against its tree (``checkpoint_faults``), but
they are kept in the same database: whoever can rewrite the entries, recompute the chain
and the tree and delete the checkpoints (the database's owner, bypassing the triggers)
leaves a ledger that verifies, and, holding the log key, can sign it again. Only a
checkpoint kept elsewhere (an auditor's, a witness's, a copy of
``SHARING_AUDIT_CHECKPOINT_DIR``) can catch that: the tree recomputed here must have that
checkpoint's root at its size. So verify says how many checkpoints it checked, warns when
there were none, and checks one kept outside when given.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, func, select

from pipeline.ledger.log.checkpoints import CHECKPOINT
from pipeline.ledger.storage.tree import root_at
from pipeline.transparency.note import Checkpoint, Note, NoteError, Verifier, cosigned_by

#: How long a witness has to answer, and the most of its answer read (a note is small).
WITNESS_TIMEOUT = 10.0
MOST_READ = 65536


class OutsideCheckpointError(Exception):
    """A checkpoint given to check against that cannot be read or is not one this log
    signed."""


def is_url(source: str) -> bool:
    """Whether ``source`` is a witness's URL (http or https, the scheme in any case)
    rather than a file."""
    return source[:8].lower().startswith(("http://", "https://"))


def read_outside(source: str, origin: str) -> tuple[bytes, str]:
    """The bytes of a checkpoint kept outside, and where they were read: ``source`` is a
    file, or a witness's URL (http or https), asked for the checkpoint of ``origin`` it
    last cosigned (``GET <url>/<hex SHA-256 of the origin>/checkpoint``)."""
    if not is_url(source):
        try:
            return Path(source).read_bytes(), source
        except OSError as exc:
            raise OutsideCheckpointError(
                f"cannot read the checkpoint {source}: {exc.strerror}"
            ) from None
    url = f"{source.rstrip('/')}/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint"
    try:
        with urllib.request.urlopen(url, timeout=WITNESS_TIMEOUT) as answer:
            return answer.read(MOST_READ), url
    except urllib.error.HTTPError as exc:
        raise OutsideCheckpointError(f"the witness answered HTTP {exc.code} for {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OutsideCheckpointError(f"the witness {url} could not be reached: {reason}") from None


@dataclass(frozen=True, slots=True)
class KeptCheckpoints:
    """The checkpoints the ledger keeps: how many, and the largest size (None if none)."""

    count: int
    latest: int | None

    def summary(self, checked_outside: bool) -> str:
        """One line saying what was checked, or warning plainly that nothing was."""
        if self.count == 0 and checked_outside:
            return (
                "no checkpoint kept in the database: the log has signed none, or they were deleted"
            )
        if self.count == 0:
            return (
                "WARNING: no checkpoint checked: the log has signed none (or they were "
                "deleted), so nothing vouches for this history but the database itself; a "
                "history rewritten by its owner verifies the same. Check against a "
                "checkpoint kept elsewhere (--checkpoint FILE, an auditor's audit verify)."
            )
        checked = f"{self.count} checkpoints checked, latest size {self.latest}"
        if checked_outside:
            return checked
        return (
            f"{checked}: against none kept outside this database (a rewrite signed again "
            "with the log key would pass; give --checkpoint FILE, or use audit verify with "
            "an auditor's kept state)"
        )


def kept_checkpoints(connection: Connection) -> KeptCheckpoints:
    row = connection.execute(select(func.count(), func.max(CHECKPOINT.c.size))).one()
    return KeptCheckpoints(int(row[0]), None if row[1] is None else int(row[1]))


@dataclass(frozen=True, slots=True)
class Outside:
    """A checkpoint kept outside the database, where it was read, and the witness whose
    cosignature it bears and when that witness cosigned it (Unix seconds), both None when
    no witness's cosignature was asked for. The time is said: an old cosigned checkpoint
    served again is still a cosigned one."""

    checkpoint: Checkpoint
    where: str
    witness: str | None = None
    cosigned_at: int | None = None


def outside_checkpoint(
    data: bytes, where: str, log: Verifier | None, origin: str, witness: Verifier | None = None
) -> Outside:
    """The checkpoint in ``data`` (read from ``where``): the log's own, signed by its key
    when ``log`` is given, for ``origin`` either way, and cosigned by ``witness`` when
    given; else :class:`OutsideCheckpointError` naming ``where`` and what is wrong.

    The witness's cosignature is what makes a witness's answer state kept outside: the
    log's signature alone is one the database's owner can make (they hold the log key),
    so a server answering at the witness's address with a checkpoint of a rewritten
    history, signed again, would otherwise pass."""
    try:
        note = Note.parse(data)
        checkpoint = Checkpoint.from_body(note.text)
    except NoteError as exc:
        raise OutsideCheckpointError(f"{where} is not a signed checkpoint: {exc}") from None
    if log is not None and not note.signed_by(log):
        raise OutsideCheckpointError(f"{where} is not signed by the log's key {log.name}")
    if checkpoint.origin != origin:
        raise OutsideCheckpointError(
            f"{where} is a checkpoint of {checkpoint.origin!r}, not of this log ({origin!r})"
        )
    if witness is None:
        return Outside(checkpoint, where)
    cosigned_at = cosigned_by(note, witness)
    if cosigned_at is None:
        raise OutsideCheckpointError(
            f"{where} bears no cosignature by the witness {witness.name} that verifies: it is "
            "not a checkpoint that witness cosigned (whoever holds the log key can sign one)"
        )
    return Outside(checkpoint, where, witness.name, cosigned_at)


def outside_fault(
    connection: Connection, checkpoint: Checkpoint, where: str, entries: int
) -> str | None:
    """What is wrong with a verified ledger of ``entries`` entries against ``checkpoint``,
    kept in ``where``: fewer entries than it covers, or another root at its size."""
    if checkpoint.size > entries:
        return (
            f"the ledger holds {entries} entries, fewer than the checkpoint of size "
            f"{checkpoint.size} kept in {where}: entries were removed (the log rolled back)"
        )
    if root_at(connection, checkpoint.size) != checkpoint.root:
        return (
            f"the ledger's tree at size {checkpoint.size} does not have the root of the "
            f"checkpoint of size {checkpoint.size} kept in {where}: its history was "
            "rewritten since that checkpoint was signed"
        )
    return None
