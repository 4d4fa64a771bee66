"""Counts in words: ``1 event``, ``2 events``, ``1,204 events``."""

from __future__ import annotations


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` and the noun that agrees with it, the count in thousands with commas; the
    plural is the singular with ``s`` unless given (``entry``, ``entries``)."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"
