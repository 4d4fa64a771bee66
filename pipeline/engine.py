"""The decision engine: records in arrival order to outcomes, with the contract's semantics.

It owns what turns a stream of records into decisions beyond a single ``decide`` call:
an id recorded once (redeliveries are duplicates, a reused id with other content is
rejected), lifecycle facts entering the register, and late facts re-evaluating the
sharing events they affect. It holds its state in memory and does no I/O; the offline
``check`` drives it from a file, and the stream agents drive it batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pipeline.policy.decide import decide, upns_of
from pipeline.policy.intake import Reading, read_event
from pipeline.policy.pack import Policy
from pipeline.register import Register, fact_of
from schemas.decisions import Decision, RuleId, Verdict
from schemas.events import LIFECYCLE_MODELS, SHARING_MODELS, Event

OutcomeKind = Literal["decision", "duplicate", "reevaluation"]


@dataclass(slots=True)
class Recorded:
    """An event recorded under its id, with its current decision.

    A valid sharing event keeps its raw bytes and time, not the parsed event: they are
    all a re-evaluation needs, and holding millions of parsed models would make the
    garbage collector's passes, not the decisions, the cost of a long run.
    """

    seq: int
    event_id: str
    digest: str
    position: Any
    decision: Decision
    raw: bytes | None = None
    time: datetime | None = None


@dataclass(slots=True)
class Outcome:
    """One thing to report or record for a record read.

    ``kind``: ``decision`` for a newly decided record, ``duplicate`` for a redelivery
    (its ``decision`` is the event's current one, nothing new is recorded), and
    ``reevaluation`` for an earlier event re-decided because of the late fact
    ``reevaluated_by``. ``recorded`` is False for a decision that could not be recorded
    under its id: the id was missing or malformed, or already belongs to another event.
    """

    kind: OutcomeKind
    position: Any
    event_id: Any
    type: Any
    decision: Decision
    event: Event | None
    digest: str
    recorded: bool = True
    reevaluated_by: str | None = None
    refers_to: Any = None


@dataclass(slots=True)
class Engine:
    """Decides records one by one, keeping what later records need to know."""

    policy: Policy
    register: Register = field(default_factory=Register)
    _recorded: dict[str, Recorded] = field(default_factory=dict)
    _by_pupil: dict[str, list[Recorded]] = field(default_factory=dict)

    @property
    def pupil_key(self) -> Callable[[str], str]:
        return self.register.pupil_key

    def process(self, raw: bytes, position: Any = None) -> list[Outcome]:
        """Outcomes for one raw record: its own, then any re-evaluations it causes."""
        reading = read_event(raw)
        key = reading.key
        prior = self._recorded.get(key) if key is not None else None
        if prior is not None:
            if prior.digest == reading.digest:
                return [self._outcome("duplicate", reading, position, prior.decision)]
            if reading.event is None:
                decision = Decision.rejected(RuleId.EVENT_INVALID, reading.problem or "invalid")
            else:
                decision = Decision.rejected(
                    RuleId.EVENT_ID_REUSED,
                    f"event id {key!r} was already recorded with different content",
                )
            return [self._outcome("decision", reading, position, decision, recorded=False)]

        if reading.event is None:
            decision = Decision.rejected(RuleId.EVENT_INVALID, reading.problem or "invalid")
            if key is not None:
                self._remember(key, reading, position, decision)
            recorded = key is not None
            return [self._outcome("decision", reading, position, decision, recorded=recorded)]

        assert key is not None  # a valid event has a well-formed id
        event = reading.event
        decision = decide(event, self.register, self.policy)
        entry = self._remember(key, reading, position, decision)
        outcomes = [self._outcome("decision", reading, position, decision)]
        if decision.decision is Verdict.REJECTED:
            return outcomes
        if isinstance(event, SHARING_MODELS):
            entry.raw, entry.time = raw, event.time
            for upn in upns_of(event):
                self._by_pupil.setdefault(self.pupil_key(upn), []).append(entry)
        elif isinstance(event, LIFECYCLE_MODELS):
            upn, fact = fact_of(event)
            pupil = self.register.add(upn, fact)
            outcomes.extend(self._reevaluate(pupil, event))
        return outcomes

    def current(self, event_id: str) -> Decision | None:
        """The current decision of a recorded event id, or None."""
        recorded = self._recorded.get(event_id)
        return recorded.decision if recorded else None

    def recorded(self) -> Iterator[Recorded]:
        return iter(self._recorded.values())

    def _reevaluate(self, pupil: str, fact_event: Event) -> Iterator[Outcome]:
        since = fact_event.time
        affected = [r for r in self._by_pupil.get(pupil, ()) if r.time and r.time >= since]
        for recorded in sorted(affected, key=lambda r: r.seq):
            assert recorded.raw is not None
            event = read_event(recorded.raw).event
            assert event is not None  # it was valid when it was recorded
            recorded.decision = decide(event, self.register, self.policy)
            yield Outcome(
                kind="reevaluation",
                position=recorded.position,
                event_id=recorded.event_id,
                type=event.type,
                decision=recorded.decision,
                event=event,
                digest=recorded.digest,
                reevaluated_by=fact_event.id,
                refers_to=recorded.position,
            )

    def _remember(self, key: str, reading: Reading, position: Any, decision: Decision) -> Recorded:
        recorded = Recorded(len(self._recorded), key, reading.digest, position, decision)
        self._recorded[key] = recorded
        return recorded

    @staticmethod
    def _outcome(
        kind: OutcomeKind,
        reading: Reading,
        position: Any,
        decision: Decision,
        recorded: bool = True,
    ) -> Outcome:
        return Outcome(
            kind=kind,
            position=position,
            event_id=reading.event_id,
            type=reading.type,
            decision=decision,
            event=reading.event,
            digest=reading.digest,
            recorded=recorded,
        )
