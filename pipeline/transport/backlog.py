"""Records awaiting a receipt: what the broker has accepted on the input topics that the
workers have not recorded yet, and how long the oldest of them has waited.

A sender holds no receipt for any of them: this is the figure that says whether the
log is keeping up with what schools send (``ledger stats --broker``, the desk, the live
line). Their count is the workers' consumer lag; the oldest one's age is now minus the
timestamp the broker keeps with the first record of each partition the workers have not
committed, read without a consumer group so that looking commits nothing.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from pipeline.transport.kafka import (
    WORKER_GROUP,
    KafkaConfig,
    Lag,
)

#: Seconds a look waits for the first unrecorded record of every partition behind.
LOOK_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Awaiting:
    """How many records await a receipt, and the oldest one's age in seconds (None when
    none awaits, or the broker gave no timestamp for it in time)."""

    records: int
    oldest_age: float | None

    def said(self) -> str:
        """In words, for a terminal or a page."""
        if not self.records:
            return "no records await a receipt"
        noun = "record awaits" if self.records == 1 else "records await"
        age = "" if self.oldest_age is None else f", the oldest for {waited(self.oldest_age)}"
        return f"{self.records:,} {noun} a receipt{age}"


def waited(seconds: float) -> str:
    """A wait as a person reads it: ``45 s``, ``12 min 5 s``, ``3 h 20 min``."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


class Backlog(Lag):
    """The records awaiting a receipt: the workers' :class:`Lag`, counted to the true end of
    each partition, with the oldest one's age; clients are held open between looks so
    that a status line may ask every second."""

    def awaiting(self, now: float | None = None, wait: float = LOOK_SECONDS) -> Awaiting | None:
        """What awaits a receipt at ``now`` (unix seconds; the clock's when None); None
        when the broker cannot say now (the next look tries again)."""
        try:
            behind = self.behind(wait)
            firsts = self._first_records({tp: start for tp, (start, _) in behind.items()}, wait)
        except Exception:  # no answer now: the next look opens new clients
            self.close()
            return None
        count = sum(end - start for start, end in behind.values())
        stamps = [int(records[0].timestamp) for records in firsts.values()]
        if not stamps or not count:
            return Awaiting(count, None)
        at = time.time() if now is None else now
        return Awaiting(count, max(0.0, at - min(stamps) / 1000))

    def _open(self) -> None:
        # Asked first: a client of a broker that is not there waits 30 seconds to give up.
        if self._admin is None and not answers(self.config.bootstrap):
            raise OSError(f"nothing listens at {self.config.bootstrap}")
        super()._open()

    def _first_records(self, at: dict[Any, int], wait: float) -> dict[Any, list[Any]]:
        """The records of the first fetch at each partition's offset in ``at``, for as
        many as answered within ``wait`` seconds."""
        if not at:
            return {}
        consumer = self._consumer
        consumer.assign(list(at))
        for tp, offset in at.items():
            consumer.seek(tp, offset)
        fetched: dict[Any, list[Any]] = {}
        deadline = time.monotonic() + wait
        while len(fetched) < len(at) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                if records and tp not in fetched:
                    fetched[tp] = records
                    consumer.pause(tp)
        consumer.resume(*at)
        consumer.assign([])
        return fetched


def in_words(seen: Awaiting | None, bootstrap: str) -> str:
    """What a look at the broker at ``bootstrap`` found, or that it did not answer."""
    return seen.said() if seen is not None else f"cannot tell: no broker answers at {bootstrap}"


def answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """Whether anything listens at one of the ``HOST:PORT,...`` given: asked first, as a
    client of a broker that is not there waits 30 seconds to give up."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def awaiting_receipts(
    config: KafkaConfig, group: str = WORKER_GROUP, now: float | None = None
) -> Awaiting | None:
    """One look at what awaits a receipt (see :class:`Backlog`); None when the broker at
    ``config`` does not answer."""
    backlog = Backlog(config, group)
    try:
        return backlog.awaiting(now)
    finally:
        backlog.close()
