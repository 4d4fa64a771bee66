"""Canonical JSON: one byte string per value, whatever the key order or spacing.

Used for policy versions, payload digests and ledger hashes, so that a value hashed today
hashes the same when an auditor recomputes it years later. UTF-8, keys sorted, no
insignificant whitespace, in the spirit of RFC 8785.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON bytes; raises ``TypeError`` for what JSON cannot hold."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from None


def digest(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
