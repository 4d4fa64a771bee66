"""Signed notes, checkpoints and cosignatures, byte for byte as C2SP specifies them
(signed-note v1, tlog-checkpoint v1, tlog-cosignature v1), so that Go's
``golang.org/x/mod/sumdb/note`` and any C2SP witness read what this log signs.

Pure but for the Ed25519 arithmetic (``cryptography``): no database, clock or network.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.transparency.merkle import Hash

ED25519 = 0x01
COSIGNATURE = 0x04
DASH = "\u2014"  # the em dash that opens a signature line
#: Signature lines a note may carry (Go's note.Open allows as many; signed-note asks every
#: verifier to accept at least 16 and to bound the rest).
MAX_SIGNATURES = 100
#: A tree size, a timestamp: at most 2**63 - 1, so at most 19 decimal digits.
MAX_DECIMAL = 2**63 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")  # ASCII digits only: [0-9], not \d


class NoteError(Exception):
    """A note, checkpoint or key that is malformed, or not signed as it must be."""


def parse_decimal(text: str, what: str) -> int:
    """``text`` as C2SP writes a size or a time: ASCII digits, no leading zero but in "0",
    at most 2**63 - 1. ``int()`` alone would take "0116", "+7", Arabic-Indic digits, and
    raise on superscripts or on thousands of digits."""
    if not _DECIMAL.fullmatch(text) or int(text) > MAX_DECIMAL:
        raise NoteError(f"{what} {text[:24]!r} is not a decimal of at most 19 digits")
    return int(text)


#: What signed-note forbids in a note: ASCII control characters other than newline.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
#: Unicode whitespace, which a key name may not hold (``str.isspace``'s characters).
_SPACE = re.compile(r"\s")


def valid_name(name: str) -> bool:
    """signed-note: a key name is non-empty, without Unicode spaces or "+"."""
    return bool(name) and "+" not in name and _SPACE.search(name) is None


def check_note_bytes(data: bytes) -> str:
    """``data`` as text, if it is what signed-note allows: UTF-8 without ASCII control
    characters other than newline; else :class:`NoteError` saying where it is not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError(f"the note is not UTF-8 (byte {exc.start})") from None
    found = _CONTROL.search(text)  # one scan: a sender checks a receipt per record
    if found is not None:
        line = text.count("\n", 0, found.start()) + 1
        raise NoteError(f"line {line} of the note holds the control character {found[0]!r}")
    return text


def key_id(name: str, kind: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not standard base64") from None


@dataclass(frozen=True, slots=True)
class Verifier:
    """A public key by name: a log's or a witness's (``kind`` ED25519 or COSIGNATURE)."""

    name: str
    public: bytes
    kind: int = ED25519

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.kind, self.public)

    def vkey(self) -> str:
        """``name+<key id hex>+<base64(kind || public key)>``: what others configure."""
        return f"{self.name}+{self.id.hex()}+{_b64(bytes([self.kind]) + self.public)}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """A verifier key as printed by :meth:`vkey`: a log's (Ed25519, 0x01) or a
        witness's (cosignature, 0x04); its id must match its name and key."""
        parts = vkey.strip().split("+", 2)  # base64 may hold "+" too
        if len(parts) != 3 or not valid_name(parts[0]):
            raise NoteError("a verifier key is NAME+KEYID+KEY")
        name, hexid, encoded = parts
        raw = _unb64(encoded, "the verifier key")
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE):
            raise NoteError("the verifier key is not an Ed25519 or cosignature key")
        verifier = cls(name, raw[1:], raw[0])
        if hexid != verifier.id.hex():
            raise NoteError("the verifier key's id does not match its name and key")
        return verifier

    def made(self, signature: Signature) -> bool:
        """Whether ``signature``'s name and key id are this key's: then it must verify."""
        return signature.name == self.name and signature.id == self.id

    def verifies(self, message: bytes, signature: bytes) -> bool:
        return _verified(self.public, message, signature)


def witness_verifier(vkey: str) -> Verifier:
    """A witness's verifier key (a cosignature key) from its one line of text; else
    :class:`NoteError`, a log's key named as such. Taken for a witness's, a log's key
    would let whoever holds the log's private key vouch for the log as its witness."""
    verifier = Verifier.parse(vkey)
    if verifier.kind != COSIGNATURE:
        raise NoteError("the key is a log's (Ed25519), not a witness's cosignature key")
    return verifier


@dataclass(frozen=True, slots=True)
class Signer:
    """A private key by name."""

    name: str
    private: bytes  # the 32-byte Ed25519 seed

    kind: int = ED25519

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, _public_of(self.private), self.kind)

    def sign(self, message: bytes) -> bytes:
        return _private_key(self.private).sign(message)


@functools.lru_cache(maxsize=16)
def _private_key(private: bytes) -> Ed25519PrivateKey:
    """The key object of a seed, made once: making it costs as much as a signature, and
    the log signs a receipt for every record it handles."""
    return Ed25519PrivateKey.from_private_bytes(private)


@functools.lru_cache(maxsize=4096)
def _verified(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` over ``message`` verifies under ``public``, each triple
    checked once: a sender checks a receipt as it reads it and again as it files it (no
    sender, however built, may file one the log did not sign), and a check costs three
    signatures' time. The answer is a pure function of the three byte strings."""
    try:
        _public_key(public).verify(signature, message)
    except InvalidSignature:
        return False
    return True


@functools.lru_cache(maxsize=16)
def _public_key(public: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public)


@functools.lru_cache(maxsize=16)
def _public_of(private: bytes) -> bytes:
    if len(private) != 32:
        raise NoteError("an Ed25519 private key is 32 bytes")
    return _private_key(private).public_key().public_bytes_raw()


def new_private_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes_raw()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's origin, its size and root (tlog-checkpoint)."""

    origin: str
    size: int
    root: Hash

    def body(self) -> bytes:
        return f"{self.origin}\n{self.size}\n{_b64(self.root)}\n".encode()

    @classmethod
    def from_body(cls, body: bytes) -> Checkpoint:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("the checkpoint is not UTF-8") from None
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint is an origin, a size and a root, a line each")
        origin, size, root = lines[0], lines[1], lines[2]
        if not origin:
            raise NoteError("the checkpoint's origin is empty")
        if "" in lines[3:-1]:
            raise NoteError("a checkpoint's extension lines must not be empty")
        digest = _unb64(root, "the checkpoint's root")
        if len(digest) != 32:
            raise NoteError("the checkpoint's root is not a SHA-256 hash")
        return cls(origin, parse_decimal(size, "the checkpoint's size"), digest)


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: the signer's name, key id and what follows it."""

    name: str
    id: bytes
    payload: bytes  # the signature, or for a cosignature the time then the signature

    def line(self) -> str:
        return f"{DASH} {self.name} {_b64(self.id + self.payload)}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A signed note: its text (ending in a newline) and its signatures."""

    text: bytes
    signatures: tuple[Signature, ...]

    def encode(self) -> bytes:
        return self.text + b"\n" + "".join(s.line() for s in self.signatures).encode()

    @classmethod
    def parse(cls, data: bytes) -> Note:
        """The note in ``data``, or :class:`NoteError` naming what signed-note forbids in
        it: bytes not UTF-8, control characters, a malformed signature line or name, more
        than :data:`MAX_SIGNATURES` signatures."""
        check_note_bytes(data)
        split = data.rfind(b"\n\n")
        if split < 0 or not data.endswith(b"\n"):
            raise NoteError("a signed note is its text, a blank line, and signature lines")
        text, lines = data[: split + 1], data[split + 2 :].decode("utf-8").split("\n")[:-1]
        if len(lines) > MAX_SIGNATURES:
            raise NoteError(f"the note has {len(lines)} signatures; at most {MAX_SIGNATURES}")
        signatures = tuple(_signature(line, n) for n, line in enumerate(lines, start=1))
        if not signatures:
            raise NoteError("the note is not signed")
        return cls(text, signatures)

    def signed_by(self, verifier: Verifier) -> bool:
        """Whether ``verifier`` signed this note (an Ed25519 note signature), and every
        line bearing its name and key id verifies: one that fails makes the whole note
        unsigned (signed-note; tlog-witness answers such a note 403)."""
        made = [s for s in self.signatures if verifier.made(s)]
        return bool(made) and all(verifier.verifies(self.text, s.payload) for s in made)


def _signature(line: str, number: int) -> Signature:
    """Signature line ``number`` of a note: em dash, space, key name, space, base64."""
    if not line.startswith(DASH + " "):
        raise NoteError(f"signature line {number} does not start with an em dash and a space")
    name, _, encoded = line[2:].partition(" ")
    if not valid_name(name):
        raise NoteError(f"signature line {number}: the key name is empty or holds a space or +")
    raw = _unb64(encoded, f"signature line {number}'s signature")
    if len(raw) < 5:
        raise NoteError(f"signature line {number}: the signature is too short")
    return Signature(name, raw[:4], raw[4:])


def sign_note(text: bytes, signer: Signer) -> Note:
    signature = Signature(signer.name, signer.verifier.id, signer.sign(text))
    return Note(text, (signature,))


def cosignature_message(body: bytes, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body


def cosign(note: Note, witness: Signer, timestamp: int) -> Signature:
    """A witness's cosignature line for the checkpoint in ``note`` at ``timestamp``
    (``witness`` of kind COSIGNATURE): a time from 1 to 2**63 - 1 (tlog-cosignature's
    bound; tlog-witness: a cosignature must not omit it by writing 0)."""
    if not 0 < timestamp <= MAX_DECIMAL:
        raise NoteError(f"a cosignature's time is from 1 to 2**63 - 1, not {timestamp}")
    signature = witness.sign(cosignature_message(note.text, timestamp))
    return Signature(witness.name, witness.verifier.id, struct.pack(">Q", timestamp) + signature)


def cosigned_by(note: Note, witness: Verifier) -> int | None:
    """The time at which ``witness`` cosigned the checkpoint in ``note``, if it did and
    every line bearing its name and key id verifies (a failing one voids them all)."""
    times = [_cosigned_at(note.text, s, witness) for s in note.signatures if witness.made(s)]
    if not times or None in times:
        return None
    return times[0]


def _cosigned_at(text: bytes, signature: Signature, witness: Verifier) -> int | None:
    """tlog-cosignature: a u64 time, at most 2**63 - 1, then Ed25519 over the message."""
    if len(signature.payload) != 72:
        return None
    (timestamp,) = struct.unpack(">Q", signature.payload[:8])
    if timestamp > MAX_DECIMAL:
        return None
    if not witness.verifies(cosignature_message(text, timestamp), signature.payload[8:]):
        return None
    return int(timestamp)


def open_checkpoint(data: bytes, log: Verifier) -> tuple[Checkpoint, Note]:
    """The checkpoint in a signed note that ``log`` signed, for ``log``'s origin; or
    :class:`NoteError` naming what is wrong. Signatures by other keys are ignored."""
    note = Note.parse(data)
    if not note.signed_by(log):
        raise NoteError(f"not signed by the log's key {log.name}")
    checkpoint = Checkpoint.from_body(note.text)
    if checkpoint.origin != log.name:
        raise NoteError(f"the checkpoint is for {checkpoint.origin!r}, not {log.name!r}")
    return checkpoint, note
