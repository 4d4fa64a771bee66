"""From raw bytes to a contract-valid event, or to the reason it is not one.

Every record the pipeline reads (a line of a file, a Kafka record value) goes through
:func:`read_event` first. It never raises: whatever the bytes, the result is either an
event or an ``event.invalid`` reason a person can act on, which is what lets bad input be
rejected without stopping the stream.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from pipeline.canonical import canonical_json
from schemas.decisions import Decision, RuleId
from schemas.events import (
    EVENT_ADAPTER,
    EVENT_ID_PATTERN,
    MAX_DEPTH,
    Event,
)
from schemas.problems import describe_validation_error

_ID = re.compile(EVENT_ID_PATTERN)


class Reading(NamedTuple):
    """What one record turned out to be (a named tuple: one is made for every record).

    ``event_id`` and ``type`` are the values as given (any JSON value, or None when the
    record is not a JSON object or lacks them). ``key`` is the id the event can be
    recorded under: the given id when it is a well-formed event id, else None.
    ``digest`` is the SHA-256 of the canonical JSON (of the raw bytes when not JSON).
    ``value`` is the decoded JSON of an event, kept so that whoever needs the record as
    given (the ledger's pseudonymised payload) does not parse its bytes again.
    """

    event: Event | None
    problem: str | None
    event_id: Any
    type: Any
    key: str | None
    digest: str
    value: Any = None


def event_key(value: Any) -> str | None:
    """``value`` if it is a well-formed event id (one an event can be recorded under)."""
    # fullmatch: the pattern's "$" would also match before a final newline.
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def invalid_decision(reading: Reading) -> Decision:
    """The ``event.invalid`` rejection of a record that is not a contract-valid event."""
    return Decision.rejected(RuleId.EVENT_INVALID, reading.problem or "invalid")


def shape_of(value: Any, limit: int) -> tuple[bool, int]:
    """Whether arrays and objects nest more than ``limit`` deep in ``value``, and how many
    keys its objects hold in all.

    Iterative, so that no depth the JSON parser accepts can exhaust Python's stack; it
    stops at the first container past the limit.
    """
    keys = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if type(node) is dict:
            keys += len(node)
            children: Any = node.values()
        else:
            children = node
        for child in children:
            # Exact types: a JSON parser makes no subclasses, and this runs for every
            # value of every record (``isinstance`` with a union costs twice as much).
            kind = type(child)
            if kind is dict or kind is list:
                if depth >= limit:
                    return True, keys
                stack.append((child, depth + 1))
    return False, keys


#: The whitespace JSON allows between tokens (RFC 8259), which orjson holds to.
_JSON_SPACE = b" \t\r\n"


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, item in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = item
    return seen


def duplicate_key(raw: bytes, keys: int) -> str | None:
    """A key that some object in ``raw`` holds twice, if any (JSON parsers differ on which
    value wins, so an event holding one means what its reader chooses).

    The decoded value holds ``keys`` keys; when the text has no more key separators than
    that, no key can repeat, and the exact (slower) parse is skipped. Every key's colon
    follows its closing quote with nothing but JSON's whitespace between them, so with
    that whitespace taken out each key leaves one ``":`` (text within strings can only
    add some): the bound holds however a key is spaced, where counting ``":`` and ``" :``
    missed a key followed by a tab, CR, LF or two spaces.
    """
    if raw.translate(None, _JSON_SPACE).count(b'":') <= keys:
        return None
    try:
        json.loads(raw, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as exc:
        return str(exc)
    except ValueError:  # what orjson took and json does not (a lone surrogate escape)
        return None
    return None


def undecidable_reason(error: str) -> str:
    """Why a record the engine failed on (``error``: the exception's name) was rejected:
    it is kept, with its bytes, for the maintainers to reproduce."""
    return (
        f"could not be decided: internal error {error}; the record is kept, report it to "
        "the sharing-audit maintainers"
    )


def read_event(raw: bytes) -> Reading:
    """Decode and validate one record; never raises."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        problem = "not valid UTF-8" if "utf-8" in text.lower() else f"not valid JSON ({text})"
        return unreadable(raw, problem)
    return read_value(value, raw)


def unreadable(raw: bytes, problem: str) -> Reading:
    """The reading of a record known only by its bytes: digested as they are."""
    return Reading(None, problem, None, None, None, hashlib.sha256(raw).hexdigest())


def read_value(value: Any, raw: bytes) -> Reading:
    """Validate ``value``, decoded from ``raw``; never raises. A value nested deeper than
    the contract allows is digested as the bytes it came from, since canonical JSON cannot
    be written for every such value (orjson stops at 255 levels)."""
    too_deep, keys = shape_of(value, MAX_DEPTH) if isinstance(value, dict | list) else (False, 0)
    if too_deep:
        problem = f"event: arrays and objects nested more than {MAX_DEPTH} deep"
        reading = unreadable(raw, problem)
        if isinstance(value, dict):
            event_id, event_type = value.get("id"), value.get("type")
            reading = reading._replace(event_id=event_id, type=event_type, key=event_key(event_id))
        return reading
    try:
        payload_digest = hashlib.sha256(canonical_json(value)).hexdigest()
    except TypeError as exc:  # no such value is known since the depth bound; kept total
        return unreadable(raw, f"event: cannot be written as canonical JSON ({exc})")
    repeated = duplicate_key(raw, keys)
    if repeated is not None:
        problem = f"event: the key {repeated!r} appears twice in one object"
        return Reading(None, problem[:200], None, None, None, payload_digest)
    if not isinstance(value, dict):
        kind = type(value).__name__ if value is not None else "null"
        return Reading(None, f"not a JSON object but {kind}", None, None, None, payload_digest)
    event_id, event_type = value.get("id"), value.get("type")
    key = event_key(event_id)
    try:
        event = EVENT_ADAPTER.validate_python(value)
    except ValidationError as exc:
        return Reading(
            None, describe_validation_error(exc), event_id, event_type, key, payload_digest
        )
    return Reading(event, None, event_id, event_type, key, payload_digest, value)
