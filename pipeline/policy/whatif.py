"""What a candidate pack would have decided: one recorded event replayed, and the
comparison of its replayed decision with its current one, tallied.

Pure: the ledger adapter (:mod:`pipeline.ledger.reading.history`) hands over each event as the
ledger keeps it (its pseudonymised payload, its pupils' keys and dates of birth, its
current decision) and the register's facts; nothing here reads a database or a clock.
The replay decides with :func:`pipeline.policy.decide.decision_for`, as the engine does, so a
candidate identical to the pack in force changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from pipeline.policy.decide import decision_for, verdict_of
from pipeline.policy.pack import Policy, parse_pack
from pipeline.policy.schools import Schools
from pipeline.register import Register
from schemas.decisions import Decision
from schemas.events import EVENT_ADAPTER, SHARING_MODELS


class NotReplayable(ValueError):
    """An event the ledger cannot replay; the message says why, naming no pupil."""


def replayed(
    body: dict[str, Any],
    keys: Sequence[str],
    births: Mapping[str, str | None],
    register: Register,
    policy: Policy,
) -> Decision:
    """The decision ``policy`` gives a recorded sharing event, with the register's facts as
    of its time.

    ``body`` is the payload the ledger kept (pupils by pseudonym); ``keys`` its pupils'
    pseudonyms, in order; ``births`` each known pupil's date of birth (ISO, or None). A
    pupil missing from ``births`` has been erased: their date of birth, which a retention
    rule may need, is gone, so the event is :class:`NotReplayable`.
    """
    pupils = []
    for key in keys:
        if key not in births:
            raise NotReplayable("a pupil of the event has been erased")
        dob = births[key]
        pupils.append({"upn": key, "dob": dob} if dob else {"upn": key})
    value = {**body, "data": {**body.get("data", {}), "pupils": pupils}}
    try:
        event = EVENT_ADAPTER.validate_python(value)
    except ValidationError:
        raise NotReplayable("its stored payload is no longer a valid event") from None
    if not isinstance(event, SHARING_MODELS):
        raise NotReplayable("it is not a sharing event")
    return decision_for(event, register, policy, keys)


@dataclass(frozen=True, slots=True)
class Change:
    """An event whose decision the candidate would change: the entry that recorded it
    (``seq``), what it was (``event``: id, type, time, school, recipient, pupils by
    pseudonym), its current decision and the candidate's, and the rules gained and lost."""

    seq: int
    event: Mapping[str, Any]
    before: Decision
    after: Decision

    @property
    def gained(self) -> list[str]:
        had = {r.value for r in self.before.rules}
        return [r.value for r in self.after.rules if r.value not in had]

    @property
    def lost(self) -> list[str]:
        has = {r.value for r in self.after.rules}
        return [r.value for r in self.before.rules if r.value not in has]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            **self.event,
            "from": _said(self.before),
            "to": _said(self.after),
            "gained": self.gained,
            "lost": self.lost,
        }


def _said(decision: Decision) -> dict[str, Any]:
    return {
        "decision": decision.decision.value,
        "rules": [r.value for r in decision.rules],
        "reasons": list(decision.reasons),
    }


def change_of(
    seq: int, event: Mapping[str, Any], before: Decision, after: Decision
) -> Change | None:
    """The change, or None when the candidate decides as the event stands now: the same
    decision and rules (reasons name times and facts, and are not a change of verdict,
    as for a re-evaluation)."""
    if verdict_of(before) == verdict_of(after):
        return None
    return Change(seq, event, before, after)


@dataclass(slots=True)
class Tally:
    """The changes found, and how many events were replayed or could not be (why)."""

    replayed: int = 0
    changes: list[Change] = field(default_factory=list)
    #: Events decided by no pack (rejected before any rule: malformed, a bad UPN).
    rejected: int = 0
    #: Why events could not be replayed, and how many for each reason.
    not_replayed: Counter[str] = field(default_factory=Counter)

    def add(self, change: Change | None) -> None:
        self.replayed += 1
        if change is not None:
            self.changes.append(change)

    def summary(self) -> dict[str, Any]:
        """Counts: in all, by rule gained and lost, by recipient, by from-to."""
        by_rule: dict[str, dict[str, int]] = {}
        by_recipient: Counter[str] = Counter()
        by_move: Counter[tuple[str, str]] = Counter()
        for change in self.changes:
            for rule in change.gained:
                by_rule.setdefault(rule, {"gained": 0, "lost": 0})["gained"] += 1
            for rule in change.lost:
                by_rule.setdefault(rule, {"gained": 0, "lost": 0})["lost"] += 1
            by_recipient[str(change.event.get("recipient"))] += 1
            by_move[change.before.decision.value, change.after.decision.value] += 1
        return {
            "replayed": self.replayed,
            "changed": len(self.changes),
            "unchanged": self.replayed - len(self.changes),
            "rejected": self.rejected,
            "not_replayed": sum(self.not_replayed.values()),
            "not_replayed_why": dict(sorted(self.not_replayed.items())),
            "by_rule": [{"rule": rule, **n} for rule, n in sorted(by_rule.items())],
            "by_recipient": [
                {"recipient": recipient, "changed": n}
                for recipient, n in sorted(
                    by_recipient.items(), key=lambda item: (-item[1], item[0])
                )
            ],
            "by_move": [
                {"from": before, "to": after, "events": n}
                for (before, after), n in sorted(
                    by_move.items(), key=lambda item: (-item[1], item[0])
                )
            ],
        }


def candidate_packs(
    text: str, source: str, schools: Schools | None = None
) -> Callable[[str | None], Policy]:
    """The candidate pack (its YAML ``text``, named ``source`` in errors) for a school's
    events: compiled for the school's own local authority under a register, as the pack
    in force is, once per authority; without a register, compiled once. Compiles the
    first at once, so a pack with problems raises :class:`PackError` here."""
    compiled: dict[int | None, Policy] = {}

    def for_school(urn: str | None) -> Policy:
        la = schools.las.get(urn or "") if schools is not None else None
        if la not in compiled:
            compiled[la] = parse_pack(text, source, la)
        return compiled[la]

    if schools is None or not schools.las:
        for_school(None)
    else:
        for_school(next(iter(schools.las)))
    return for_school
