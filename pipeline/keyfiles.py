"""Keys given as hexadecimal text, in a setting or in a file kept beside a SQLite
database: the pseudonym key, the log's signing key and a witness's key are read one way,
and a key that is not one is refused with a message naming where it was found.
"""

from __future__ import annotations

from pathlib import Path

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
