"""Validation errors as a person reads them: where the problem is, then what it is."""

from __future__ import annotations

from pydantic_core import ErrorDetails


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
