"""Waiting before trying again: exponential, capped, with jitter so that several workers
that lost the same database do not all come back at the same instant."""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff_delays(first: float = 0.5, cap: float = 30.0, factor: float = 2.0) -> Iterator[float]:
    """Seconds to wait before each retry, forever: first, then growing to ``cap``."""
    delay = first
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(cap, delay * factor)
