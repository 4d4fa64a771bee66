"""Validation errors as a person reads them: where the problem is, then what it is, and
never the value given (it may hold a pupil's data). Used for events and for packs."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.events import (
    DATE_PATTERN,
    DESTINATION_PATTERN,
    EVENT_ID_PATTERN,
    EVENT_TYPES,
    RECIPIENT_PATTERN,
    RFC3339_PATTERN,
    SOURCE_PATTERN,
)

_MAX_PROBLEMS = 5
_PATTERN_HINTS = {
    EVENT_ID_PATTERN: "must be 1 to 128 printable ASCII characters",
    SOURCE_PATTERN: "must be /schools/{URN} with the school's 6-digit URN",
    DESTINATION_PATTERN: 'must be "school:{URN}" with a 6-digit URN, or "unknown"',
    DATE_PATTERN: "must be a date written YYYY-MM-DD",
    RECIPIENT_PATTERN: "must be 1 to 64 lowercase letters, digits and the characters :._-",
    RFC3339_PATTERN: (
        "must be an RFC 3339 timestamp with a UTC offset, e.g. 2026-07-21T09:30:00+01:00"
    ),
}


def location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a path: ``data.pupils[2].upn``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def message(error: ErrorDetails) -> str:
    """The error's message, with pydantic's wording for a missing field made plain."""
    if error["type"] == "missing":
        return "missing"
    return error["msg"].removeprefix("Value error, ")


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    loc = error["loc"]
    if kind == "union_tag_not_found":
        return "type: missing"
    if kind == "union_tag_invalid":
        return f"type: not an event type of contract v1 (one of {', '.join(EVENT_TYPES)})"
    if loc and loc[0] in EVENT_TYPES:
        loc = loc[1:]  # the discriminator's tag adds nothing a vendor can act on
    where = location(loc) or "event"
    hint = _PATTERN_HINTS.get(error.get("ctx", {}).get("pattern", ""))
    if kind == "string_pattern_mismatch" and hint:
        return f"{where}: {hint}"
    return f"{where}: {message(error)}"


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each problem and where it is, without echoing any input value."""
    problems = [_describe(e) for e in exc.errors(include_url=False, include_input=False)]
    text = "; ".join(dict.fromkeys(problems[:_MAX_PROBLEMS]))
    if len(problems) > _MAX_PROBLEMS:
        text += f"; and {len(problems) - _MAX_PROBLEMS} more"
    return text
