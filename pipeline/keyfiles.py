"""Keys given as hexadecimal text, in a setting or in a file kept beside a SQLite
database: the pseudonym key, the log's signing key and a witness's key are found, made,
read, replaced and destroyed one way, and a key that is not one is refused with a message
naming where it was found.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

#: The bytes of every key the project keeps (Ed25519 seeds, HMAC keys).
KEY_BYTES = 32


def hex_key(text: str, where: str, fault: type[Exception], exact: bool = True) -> bytes:
    """The key ``text`` spells in hexadecimal: :data:`KEY_BYTES` bytes (at least as many,
    when not ``exact``). Raises ``fault`` naming ``where`` (a setting, or a file)."""
    wanted = f"{2 * KEY_BYTES} hexadecimal characters{'' if exact else ' or more'}"
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise fault(f"{where} must be {wanted}") from None
    if len(key) < KEY_BYTES or (exact and len(key) != KEY_BYTES):
        raise fault(f"{where} must be {wanted} ({KEY_BYTES} bytes); it holds {len(key)}")
    return key


def key_in_file(path: Path, what: str, fault: type[Exception], exact: bool = True) -> bytes:
    """The key the file at ``path`` holds (see :func:`hex_key`); ``fault`` naming ``what``
    and the file when it cannot be read or holds no key."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise fault(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return hex_key(text, f"{what} {path}", fault, exact)


def key_file_for(database_url: str, suffix: str = ".key") -> Path | None:
    """Where the embedded default keeps a key: beside the SQLite file, its name ending in
    ``suffix`` (None for any other database)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).with_suffix(Path(url.database).suffix + suffix)


def create_key_file(path: Path, key: bytes) -> None:
    """Write ``key`` (hex) to a new file only its owner may read (0600), whole or not at
    all: it is written aside and linked into place, so a process starting beside another
    (``up``'s worker and an ``emit`` or ``log vkey``) never reads it half written, and
    one that loses the race leaves the winner's key as it is. Read the file afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, aside = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(key.hex() + "\n")
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(aside, path)
    finally:
        os.unlink(aside)


def pending_key_file(path: Path) -> Path:
    """Where a new key waits beside ``path`` while ``ledger rotate-key`` records it: the
    new key is on disk before the ledger needs it, and the old one is still in place."""
    return path.with_name(path.name + ".new")


def write_new_key_file(path: Path, key: bytes) -> None:
    """Write ``key`` (hex) to a new file only its owner may read (0600), on disk before
    this returns (the file and its folder synced). Raises :class:`FileExistsError` when
    ``path`` exists: a key file is never overwritten with another key."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")
        out.flush()
        os.fsync(out.fileno())
    _sync_folder(path.parent)


def replace_key_file(path: Path, new: Path) -> None:
    """Put the key file ``new`` in the place of ``path``, the old key's bytes overwritten
    first (random bytes, then zeros, each synced), so that the old file's blocks no longer
    hold the key; then ``new`` is renamed over it (atomic) and the folder synced.

    A crash at any point leaves ``new`` whole: called again, it finishes the swap. What a
    file system or a disk keeps elsewhere (copy-on-write blocks, snapshots, an SSD's
    remapped cells) no overwrite reaches: deploy/README.md says so."""
    _overwrite(path, random_first=True)
    os.replace(new, path)
    _sync_folder(path.parent)


def discard_key_file(path: Path) -> None:
    """Overwrite and remove a key file no ledger needs (a rotation that never committed)."""
    _overwrite(path, random_first=False)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    _sync_folder(path.parent)


def _overwrite(path: Path, random_first: bool) -> None:
    """Overwrite the key file at ``path`` where it lies (random bytes first, when asked,
    then zeros), each pass synced; nothing when there is no such file."""
    with contextlib.suppress(FileNotFoundError), path.open("r+b") as old:
        size = os.fstat(old.fileno()).st_size
        fills = (secrets.token_bytes(size), bytes(size)) if random_first else (bytes(size),)
        for fill in fills:
            old.seek(0)
            old.write(fill)
            old.flush()
            os.fsync(old.fileno())


def _sync_folder(folder: Path) -> None:
    """Make a file's creation or renaming in ``folder`` durable (a POSIX folder's fsync)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
