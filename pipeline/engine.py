"""The decision engine: records in arrival order to outcomes, with the contract's semantics.

It owns what turns a stream of records into decisions beyond a single ``decide`` call:
an id recorded once (redeliveries are duplicates, a reused id with other content is
rejected), lifecycle facts entering the register, and late facts re-evaluating the
sharing events they affect: those of the fact's own school, whose facts they are. It
holds its state in memory and does no I/O: the offline ``check`` drives it from a file,
and the ledger writer preloads it, batch by batch, with what the ledger already holds
about the batch's events and pupils.

Every outcome that becomes a ledger entry is given a sequence number by ``allocate`` as it
is made, so re-evaluations and conflicting arrivals can refer to the entry they concern.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pipeline.policy.decide import decide, decision_for, upns_of, verdict_of
from pipeline.policy.intake import Reading, invalid_decision, read_event
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Schools
from pipeline.register import Register, SchoolFact, fact_of
from schemas.decisions import Decision, RuleId, Verdict
from schemas.events import LIFECYCLE_MODELS, SHARING_MODELS, Event

OutcomeKind = Literal["decision", "duplicate", "reevaluation"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record was read: a Kafka position, or ``file:NAME``, partition 0, line."""

    topic: str | None
    partition: int | None
    offset: int | None

    @classmethod
    def line(cls, source: str, number: int) -> Position:
        return cls(f"file:{source}", 0, number)

    def __reduce__(self) -> tuple[type[Position], tuple[str | None, int | None, int | None]]:
        # Thousands cross to the writer process and back with every batch. A slotted
        # dataclass pickles through dataclasses.fields() per object, five times slower.
        return Position, (self.topic, self.partition, self.offset)


@dataclass(slots=True)
class Recorded:
    """An event recorded under its id, with its current decision.

    A valid sharing event also keeps its raw bytes, time, pupil keys and school (the URN
    of its source): all a re-evaluation needs. Holding raw bytes rather than parsed
    events keeps millions of recorded events from making the garbage collector, not the
    decisions, the cost of a long run.
    """

    seq: int
    event_id: str
    digest: str
    decision: Decision
    raw: bytes | None = None
    time: datetime | None = None
    pupils: tuple[str, ...] = ()
    position: Any = None
    school: str | None = None


@dataclass(slots=True)
class Outcome:
    """One thing to report, and (unless a duplicate) to record, for a record read.

    ``kind``: ``decision`` for a newly decided record; ``duplicate`` for a redelivery (its
    ``decision`` is the current one, nothing new is recorded, ``seq`` is the entry it
    repeats); ``reevaluation`` for an earlier event re-decided because of the late fact
    ``reevaluated_by``. ``recorded`` is False for a decision that is not the decision of
    its id: the id was unusable, or belongs to an event with other content (then
    ``refers_to`` is that event's entry). ``refers_to`` of a re-evaluation is the entry of
    the event re-decided.
    """

    kind: OutcomeKind
    seq: int | None
    position: Any
    event_id: Any
    type: Any
    decision: Decision
    event: Event | None
    digest: str
    recorded: bool = True
    reevaluated_by: str | None = None
    refers_to: int | None = None
    pupils: tuple[str, ...] = ()
    policy: Policy | None = None  # the policy that decided, for a valid event
    #: The RFC 6962 leaf hash of entry ``seq``, once the ledger has it: what a receipt names.
    leaf: bytes | None = None
    #: For a re-evaluation, whether the decision or its rules differ from those it replaces:
    #: one that changes nothing is recorded (the contract) but raises no alert of its own.
    changed: bool = True


@dataclass(slots=True)
class Engine:
    """Decides records one by one, keeping what later records need to know."""

    policy: Policy
    register: Register = field(default_factory=Register)
    #: With a register of schools, each event is decided by its source school's policy,
    #: and an event from a school outside it is rejected; without one, by ``policy``.
    schools: Schools | None = None
    allocate: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__)
    _recorded: dict[str, Recorded] = field(default_factory=dict)
    _conflicts: dict[tuple[str, str], tuple[int, Decision]] = field(default_factory=dict)
    #: Recorded sharing events by (school, pupil key): what a fact of that school may re-decide.
    _by_pupil: dict[tuple[str, str], list[Recorded]] = field(default_factory=dict)

    @property
    def pupil_key(self) -> Callable[[str], str]:
        return self.register.pupil_key

    def preload(
        self,
        recorded: Iterable[Recorded] = (),
        facts: Iterable[SchoolFact] = (),
        conflicts: Iterable[tuple[str, str, int, Decision]] = (),
    ) -> None:
        """Seed the state with what is already recorded (events, facts, reused ids)."""
        for entry in recorded:
            self._index(entry)
        self.register.add_all(facts)
        for event_id, digest, seq, decision in conflicts:
            self._conflicts[(event_id, digest)] = (seq, decision)

    def process(
        self,
        raw: bytes,
        position: Any = None,
        reading: Reading | None = None,
        pupils: tuple[str, ...] | None = None,
    ) -> list[Outcome]:
        """Outcomes for one raw record: its own, then any re-evaluations it causes.

        ``reading`` is ``read_event(raw)`` and ``pupils`` the keys of the event's pupils,
        when the caller has already made them (the ledger writer needs both before the
        engine does, and a record is read and its pupils pseudonymised once).
        """
        if reading is None:
            reading = read_event(raw)
        key = reading.key
        prior = self._recorded.get(key) if key is not None else None
        if prior is not None:
            if prior.digest == reading.digest:
                return [outcome_of("duplicate", prior.seq, reading, position, prior.decision)]
            return [self._conflict(prior, reading, position)]

        if reading.event is None:
            decision = invalid_decision(reading)
            seq = self.allocate()
            if key is not None:
                self._index(Recorded(seq, key, reading.digest, decision, position=position))
            outcome = outcome_of("decision", seq, reading, position, decision)
            outcome.recorded = key is not None
            return [outcome]

        assert key is not None  # a valid event has a well-formed id
        event = reading.event
        policy = self.policy_for(event)
        if policy is None:
            assert self.schools is not None
            decision = Decision.rejected(RuleId.EVENT_INVALID, self.schools.refusal(event.source))
        else:
            decision = decision_for(event, self.register, policy, pupils)
        seq = self.allocate()
        entry = Recorded(seq, key, reading.digest, decision, position=position)
        outcome = outcome_of("decision", seq, reading, position, decision)
        outcome.policy = policy
        outcomes = [outcome]
        if decision.decision is not Verdict.REJECTED:
            if pupils is None:
                pupils = tuple(self.pupil_key(u) for u in upns_of(event))
            outcome.pupils = entry.pupils = pupils
        if isinstance(event, SHARING_MODELS) and decision.decision is not Verdict.REJECTED:
            entry.raw, entry.time, entry.school = raw, event.time, event.urn
        self._index(entry)
        if isinstance(event, LIFECYCLE_MODELS) and decision.decision is not Verdict.REJECTED:
            upn, fact = fact_of(event)
            pupil = self.register.add(event.urn, upn, fact)
            outcomes.extend(self._reevaluate(pupil, event))
        return outcomes

    def policy_for(self, event: Event) -> Policy | None:
        """The policy that decides ``event``: its school's, or None for a school outside
        the register."""
        return self.policy if self.schools is None else self.schools.policy_for(event.source)

    def current(self, event_id: str) -> Decision | None:
        """The current decision of a recorded event id, or None."""
        recorded = self._recorded.get(event_id)
        return recorded.decision if recorded else None

    def recorded(self) -> Iterator[Recorded]:
        return iter(self._recorded.values())

    def _index(self, entry: Recorded) -> None:
        self._recorded[entry.event_id] = entry
        if entry.raw is not None:
            assert entry.school is not None  # a re-decidable event keeps its school
            for pupil in entry.pupils:
                self._by_pupil.setdefault((entry.school, pupil), []).append(entry)

    def _conflict(self, prior: Recorded, reading: Reading, position: Any) -> Outcome:
        """A record whose id is taken by other content: rejected, never the id's decision."""
        assert reading.key is not None
        known = self._conflicts.get((reading.key, reading.digest))
        if known is not None:
            seq, decision = known
            outcome = outcome_of("duplicate", seq, reading, position, decision)
        else:
            if reading.event is None:
                decision = invalid_decision(reading)
            else:
                decision = Decision.rejected(
                    RuleId.EVENT_ID_REUSED,
                    f"event id {reading.key!r} was already recorded with different content",
                )
            seq = self.allocate()
            self._conflicts[(reading.key, reading.digest)] = (seq, decision)
            outcome = outcome_of("decision", seq, reading, position, decision)
        outcome.recorded = False
        outcome.refers_to = prior.seq
        return outcome

    def _reevaluate(self, pupil: str, fact_event: Event) -> Iterator[Outcome]:
        """Re-decide the events the fact may change: the pupil's at the fact's own school
        (another school's facts never decide them), timed at or after the fact."""
        since = fact_event.time
        candidates = self._by_pupil.get((fact_event.urn, pupil), ())
        affected = [r for r in candidates if r.time and r.time >= since]
        for recorded in sorted(affected, key=lambda r: r.seq):
            assert recorded.raw is not None
            event = read_event(recorded.raw).event
            assert event is not None  # it was valid when it was recorded
            policy = self.policy_for(event)
            assert policy is not None  # an event outside the register was rejected
            before = recorded.decision
            recorded.decision = decide(event, self.register, policy, recorded.pupils or None)
            yield Outcome(
                kind="reevaluation",
                seq=self.allocate(),
                position=recorded.position,
                event_id=recorded.event_id,
                type=event.type,
                decision=recorded.decision,
                event=event,
                digest=recorded.digest,
                reevaluated_by=fact_event.id,
                refers_to=recorded.seq,
                pupils=recorded.pupils,
                policy=policy,
                changed=verdict_of(before) != verdict_of(recorded.decision),
            )


def outcome_of(
    kind: OutcomeKind, seq: int | None, reading: Reading, position: Any, decision: Decision
) -> Outcome:
    """The outcome for the record behind ``reading``."""
    return Outcome(
        kind=kind,
        seq=seq,
        position=position,
        event_id=reading.event_id,
        type=reading.type,
        decision=decision,
        event=reading.event,
        digest=reading.digest,
    )
