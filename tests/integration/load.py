"""Many clients at once against a served app: bounded in requests and in time.

Used by the load test (no 5xx, whatever the concurrency) and by ``bench/api.py`` (rates
and latencies per route). Traffic goes to the loopback address the app is served on.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

#: The longest one request may take before it counts as failed (a client would give up).
TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Call:
    """One kind of request: a route as a person or a script would use it."""

    name: str
    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, str] | None = None


@dataclass(slots=True)
class Answers:
    """Per route: each answer's status and seconds, and when the run started and ended."""

    by_route: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    seconds: float = 0.0

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answers in self.by_route.values():
            for status, _ in answers:
                counts[status] = counts.get(status, 0) + 1
        return counts

    def p95(self, route: str) -> float:
        times = sorted(t for _, t in self.by_route[route])
        return times[max(0, int(len(times) * 0.95) - 1)]

    def p50(self, route: str) -> float:
        return statistics.median(t for _, t in self.by_route[route])

    def rate(self, route: str) -> float:
        return len(self.by_route[route]) / self.seconds if self.seconds else 0.0


def load(address: str, token: str, calls: Sequence[Call], clients: int, total: int) -> Answers:
    """``total`` requests from ``clients`` at once, the calls taken in turn; a request
    that fails to connect or times out is answered 599."""
    answers = Answers({call.name: [] for call in calls})
    turns = itertools.count()
    lock = threading.Lock()

    def client() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=address, headers=headers, timeout=TIMEOUT) as http:
            while (turn := next(turns)) < total:
                call = calls[turn % len(calls)]
                started = time.perf_counter()
                try:
                    response = http.request(
                        call.method, call.path, json=call.json, params=call.params
                    )
                    status = response.status_code
                except httpx.HTTPError:
                    status = 599
                with lock:
                    answers.by_route[call.name].append((status, time.perf_counter() - started))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for running in [pool.submit(client) for _ in range(clients)]:
            running.result()
    answers.seconds = time.perf_counter() - started
    return answers


def audit_calls(upns: Sequence[str], incidents: Sequence[int], rounds: int = 50) -> list[Call]:
    """The routes an auditor's and a DPO's day leans on: search (by pupil and by decision),
    export, subject access, the queue and an incident. Each of ``rounds`` rounds asks
    about another of the pupils and incidents given, as a day's work spreads over many:
    a thousand searches of one pupil would be no one's day."""
    calls: list[Call] = []
    for turn in range(rounds):
        upn, incident = upns[turn % len(upns)], incidents[turn % len(incidents)]
        calls += [
            Call("search_pupil", "POST", "/entries/search", json={"upn": upn}),
            Call("search_breach", "GET", "/entries", params={"decision": "breach"}),
            Call(
                "export", "GET", "/entries/export", params={"decision": "breach", "format": "csv"}
            ),
            Call("sar", "POST", "/pupils/sar", json={"upn": upn}),
            Call("incidents", "GET", "/incidents"),
            Call("incident", "GET", f"/incidents/{incident}"),
        ]
    return calls
