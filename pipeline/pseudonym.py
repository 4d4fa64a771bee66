"""The deployment's pseudonym key: it seals each identity row (a MAC) and names itself
by a fingerprint, so that a ledger is only ever used with the key it was written with.

Everything that leaves the core (ledger hashes, logs, alerts, topics other than the
inputs, error messages) names a pupil by pseudonym, never by UPN. Pupils recorded before
migration 0011 have HMAC-SHA256 of their normalised UPN under this key as pseudonym (what
:class:`Pseudonymiser` computes); a new pupil's is drawn at random instead
(:mod:`pipeline.ledger.writing.pupils`), so that erasing the pupil's identity row leaves no key
that remakes it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache
from pathlib import Path

from pipeline.keyfiles import KEY_BYTES, create_key_file, hex_key, key_file_for, key_in_file
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

        self._mac = mac
        self._pseudonym = pseudonym

    def __call__(self, upn: str) -> str:
        return self._pseudonym(upn)

    def identity_mac(self, pupil_key: str, upn: str, dob: str | None) -> str:
        """The MAC of an identity row: whoever edits the row without the key is found."""
        # Not cached: the writer seals a row only when it writes it (a new pupil, a date
        # of birth the row lacked), and ``ledger verify`` each row once. A cache of 200,000
        # seals held 88 MB of a check of three million entries, for nothing.
        return self._mac("\x00".join(("identity", pupil_key, upn, dob or "")).encode())

    @property
    def fingerprint(self) -> str:
        """Names the key without revealing it (nor any pseudonym made with it)."""
        return self._mac(b"sharing-audit key fingerprint")


def pseudonymiser(key: bytes) -> Pseudonymiser:
    """The pseudonyms under ``key``: a function from a valid UPN to its pseudonym."""
    return Pseudonymiser(key)


def read_key_file(path: Path) -> bytes:
    """The key a key file holds. Raises :class:`PseudonymKeyError` naming the file when
    it cannot be read or holds no key."""
    return key_in_file(path, "the pseudonym key", PseudonymKeyError, exact=False)


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
