"""The offline check: a JSON Lines file of events in, one decision object per line out.

This is how an MIS vendor validates what it will emit and how a DPO runs a day's events
through the school's policy before any Kafka exists. It drives the same engine the stream
agents use, and prints decisions exactly as the contract's last section specifies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from pipeline.engine import Engine, Outcome, Position
from schemas.decisions import RuleId

Result = dict[str, Any]


def numbered_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, line without its end) for each line that is not blank.

    Blank lines separate nothing in JSON Lines and carry no event, so they get no decision.
    """
    for number, line in enumerate(stream, 1):
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield number, line


def result_of(outcome: Outcome) -> Result:
    """The contract's JSON object for one outcome."""
    decision = outcome.decision
    position = outcome.position
    result: Result = {
        "line": position.offset if isinstance(position, Position) else position,
        "event_id": outcome.event_id,
        "type": outcome.type,
        "decision": decision.decision.value,
        "rules": [r.value for r in decision.rules],
        "reasons": list(decision.reasons),
    }
    if outcome.kind == "duplicate":
        result["duplicate"] = True
    elif outcome.kind == "reevaluation":
        result["reevaluated_by"] = outcome.reevaluated_by
    return result


@dataclass(slots=True)
class Summary:
    """Final decision of every line (re-evaluations replace earlier ones), and counts."""

    final: dict[int, str] = field(default_factory=dict)
    duplicates: int = 0
    reevaluations: int = 0

    def add(self, result: Result) -> None:
        self.final[result["line"]] = result["decision"]
        if result.get("duplicate"):
            self.duplicates += 1
        if "reevaluated_by" in result:
            self.reevaluations += 1

    def counts(self) -> Counter[str]:
        return Counter(self.final.values())


Decider = Callable[[Sequence[tuple[bytes, Position]]], list[Outcome]]


def in_memory(engine: Engine) -> Decider:
    """Decide batches with an engine alone: nothing is recorded anywhere."""

    def decide_batch(records: Sequence[tuple[bytes, Position]]) -> list[Outcome]:
        return [o for raw, position in records for o in engine.process(raw, position)]

    return decide_batch


def check_lines(
    lines: Iterable[tuple[int, bytes]],
    decide_batch: Decider,
    emit: Callable[[Result], None],
    on_progress: Callable[[int], None] | None = None,
    source: str = "-",
    batch: int = 1,
) -> Summary:
    """Decide every line in order, ``batch`` lines at a time, passing results to ``emit``.

    ``on_progress`` is told the bytes read by each batch (for a progress bar).
    """
    summary = Summary()
    pending: list[tuple[bytes, Position]] = []
    size = 0

    def flush() -> None:
        nonlocal size
        for outcome in decide_batch(pending):
            result = result_of(outcome)
            summary.add(result)
            emit(result)
        if on_progress is not None:
            on_progress(size)
        pending.clear()
        size = 0

    for number, raw in lines:
        pending.append((raw, Position.line(source, number)))
        size += len(raw) + 1
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return summary


@dataclass(slots=True)
class Expected:
    """What a ledger must hold once it has recorded some records, in whatever order they
    arrive: each event id's final decision (as rule ids), how many decision entries, and
    the records that are not contract events."""

    final: dict[str, tuple[str, tuple[str, ...]]]
    entries: int
    invalid: list[bytes]


def expected_of(raws: Iterable[bytes], engine: Engine) -> Expected:
    """Decide ``raws`` offline with ``engine``: the yardstick for the stream's ledger."""
    entries = 0
    ids: list[str] = []
    invalid: list[bytes] = []
    for number, raw in enumerate(raws):
        for outcome in engine.process(raw, Position("expected", 0, number)):
            if outcome.kind == "reevaluation":
                continue
            if outcome.decision.rules == (RuleId.EVENT_INVALID,):
                invalid.append(raw)
            if outcome.kind == "decision":
                entries += 1
                if outcome.recorded and isinstance(outcome.event_id, str):
                    ids.append(outcome.event_id)
    final = {}
    for event_id in ids:
        decision = engine.current(event_id)
        if decision is not None:
            final[event_id] = (decision.decision.value, tuple(r.value for r in decision.rules))
    return Expected(final, entries, invalid)
