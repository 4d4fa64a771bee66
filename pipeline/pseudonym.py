"""The deployment's pseudonym key: it seals each identity row (a MAC) and names itself
by a fingerprint, so that a ledger is only ever used with the key it was written with.

Everything that leaves the core (ledger hashes, logs, alerts, topics other than the
inputs, error messages) names a pupil by pseudonym, never by UPN. Pupils recorded before
migration 0011 have HMAC-SHA256 of their normalised UPN under this key as pseudonym (what
:class:`Pseudonymiser` computes); a new pupil's is drawn at random instead
(:mod:`pipeline.ledger.pupils`), so that erasing the pupil's identity row leaves no key
that remakes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from functools import lru_cache
from pathlib import Path

from sqlalchemy.engine import make_url

from pipeline.keyfiles import KEY_BYTES, hex_key, key_in_file
from pipeline.register import normalise_upn


class PseudonymKeyError(Exception):
    """The pseudonym key is missing, unreadable or too short."""


class Pseudonymiser:
    """A UPN's pseudonym under one key (called as a function, cached), and the other
    values that key vouches for: the MAC sealing an identity row, and the key's
    fingerprint, by which a ledger knows the key it was written with."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise PseudonymKeyError(f"the pseudonym key must be at least {KEY_BYTES} bytes")
        # The key's HMAC state, set up once and copied for each message: under OpenSSL 3,
        # setting up a key costs more than the MAC of a UPN itself.
        keyed = hmac.new(key, digestmod=hashlib.sha256)

        def mac(message: bytes) -> str:
            state = keyed.copy()
            state.update(message)
            return state.hexdigest()

        @lru_cache(maxsize=200_000)
        def pseudonym(upn: str) -> str:
            return mac(normalise_upn(upn).encode("ascii"))

        # An identity row is sealed again each time its pupil is shared: cached likewise.
        @lru_cache(maxsize=200_000)
        def identity_mac(pupil_key: str, upn: str, dob: str | None) -> str:
            return mac("\x00".join(("identity", pupil_key, upn, dob or "")).encode())

        self._mac = mac
        self._pseudonym = pseudonym
        self._identity_mac = identity_mac

    def __call__(self, upn: str) -> str:
        return self._pseudonym(upn)

    def identity_mac(self, pupil_key: str, upn: str, dob: str | None) -> str:
        """The MAC of an identity row: whoever edits the row without the key is found."""
        return self._identity_mac(pupil_key, upn, dob)

    @property
    def fingerprint(self) -> str:
        """Names the key without revealing it (nor any pseudonym made with it)."""
        return self._mac(b"sharing-audit key fingerprint")


def pseudonymiser(key: bytes) -> Pseudonymiser:
    """The pseudonyms under ``key``: a function from a valid UPN to its pseudonym."""
    return Pseudonymiser(key)


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


def read_key_file(path: Path) -> bytes:
    """The key a key file holds. Raises :class:`PseudonymKeyError` naming the file when
    it cannot be read or holds no key."""
    return key_in_file(path, "the pseudonym key", PseudonymKeyError, exact=False)


def replace_key_file(path: Path, new: Path) -> None:
    """Put the key file ``new`` in the place of ``path``, the old key's bytes overwritten
    first (random bytes, then zeros, each synced), so that the old file's blocks no longer
    hold the key; then ``new`` is renamed over it (atomic) and the folder synced.

    A crash at any point leaves ``new`` whole: called again, it finishes the swap. What a
    file system or a disk keeps elsewhere (copy-on-write blocks, snapshots, an SSD's
    remapped cells) no overwrite reaches: deploy/README.md says so."""
    with contextlib.suppress(FileNotFoundError), path.open("r+b") as old:
        size = os.fstat(old.fileno()).st_size
        for fill in (secrets.token_bytes(size), bytes(size)):
            old.seek(0)
            old.write(fill)
            old.flush()
            os.fsync(old.fileno())
    os.replace(new, path)
    _sync_folder(path.parent)


def discard_key_file(path: Path) -> None:
    """Overwrite and remove a key file no ledger needs (a rotation that never committed)."""
    with contextlib.suppress(FileNotFoundError), path.open("r+b") as old:
        size = os.fstat(old.fileno()).st_size
        old.write(bytes(size))
        old.flush()
        os.fsync(old.fileno())
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a file's creation or renaming in ``folder`` durable (a POSIX folder's fsync)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_key(configured: str | None, database_url: str, may_create: bool = True) -> bytes:
    """The configured key, else the one kept beside the SQLite file, made on first use
    when ``may_create`` (the caller says no for a ledger already holding pupils).

    A server database (PostgreSQL) must be given its key in the settings: generating one
    silently there would make pseudonyms unrepeatable across workers.
    """
    if configured:
        return hex_key(configured, "SHARING_AUDIT_PSEUDONYM_KEY", PseudonymKeyError, exact=False)
    path = key_file_for(database_url)
    if path is None:
        raise PseudonymKeyError(
            "set SHARING_AUDIT_PSEUDONYM_KEY (64 hex characters) for a server database"
        )
    if path.exists():
        return read_key_file(path)
    if not may_create:
        raise PseudonymKeyError(
            f"no pseudonym key: this ledger holds pupils, and its key {path} is missing; "
            "restore it, or set SHARING_AUDIT_PSEUDONYM_KEY to the key it was written with"
        )
    create_key_file(path, secrets.token_bytes(KEY_BYTES))
    return read_key_file(path)
