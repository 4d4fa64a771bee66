"""One pupil known to two schools of a trust, and the facts each records.

Facts belong to the school that recorded them (contract Clarifications, 2026-12-06;
DESIGN invariant 11). Each case is one kind of fact recorded by the other school (B) for
a pupil this school (A) shares: A's events decided alone give ``alone``, and B's fact,
whether it arrives before A's sharing event or after it (a late fact timed before it),
must leave that decision as it is and never be named in A's reasons. ``decides`` is
A's decision were the same fact A's own: the proof that the case would catch a mix-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.factory import (
    NEXT_SCHOOL,
    SCHOOL,
    census,
    consent_given,
    consent_withdrawn,
    destroyed,
    left,
    referral,
    transfer,
)

OTHER_SCHOOL = "/schools/116235"
#: The URN of SCHOOL, the school whose facts and events the cases are about.
URN = SCHOOL.rsplit("/", 1)[1]
ELSEWHERE = "school:116999"

Event = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """A's own events (its facts, then the sharing event last), B's fact, and A's
    sharing event's decision (verdict and rules) without B's fact and with it as A's."""

    own: list[Event]
    others_fact: Event
    alone: tuple[str, list[str]]
    decides: tuple[str, list[str]]

    @property
    def event(self) -> Event:
        return self.own[-1]

    def arrivals(self, late: bool, fact: Event | None = None) -> list[Event]:
        """A's events and B's fact (or ``fact``) in the order they arrive: the fact before
        A's sharing event, or after it (``late``: a fact timed before the event it follows)."""
        fact = self.others_fact if fact is None else fact
        return [*self.own, fact] if late else [*self.own[:-1], fact, self.event]

    def as_own(self) -> Event:
        """B's fact as though A had recorded it (a new id, A's source)."""
        return {**self.others_fact, "id": f"own-{self.others_fact['id']}", "source": SCHOOL}


def _consent_referral_at(**kw: Any) -> Event:
    return referral(
        lawful_basis="consent",
        special_condition="9.2.a",
        consent_ref="C-1",
        categories=["personal", "medical"],
        **kw,
    )


def _consent_referral() -> Event:
    return _consent_referral_at(time="2026-07-21T09:30:00+01:00")


def _consent_given() -> Case:
    return Case(
        own=[_consent_referral()],
        others_fact=consent_given(source=OTHER_SCHOOL, time="2026-07-01T09:00:00+01:00"),
        alone=("breach", ["consent.missing"]),
        decides=("allowed", []),
    )


def _consent_withdrawn() -> Case:
    return Case(
        own=[consent_given(time="2026-07-01T09:00:00+01:00"), _consent_referral()],
        others_fact=consent_withdrawn(source=OTHER_SCHOOL, time="2026-07-10T09:00:00+01:00"),
        alone=("allowed", []),
        decides=("breach", ["consent.withdrawn"]),
    )


def _left() -> Case:
    return Case(
        own=[transfer(recipient=NEXT_SCHOOL, time="2026-07-21T09:30:00+01:00")],
        others_fact=left(
            destination=ELSEWHERE, source=OTHER_SCHOOL, time="2026-07-17T15:00:00+01:00"
        ),
        alone=("review", ["transfer.no_destination"]),
        decides=("breach", ["transfer.wrong_destination"]),
    )


def _destination() -> Case:
    """A recorded the pupil leaving for the school it sends to; B's later leaving names
    another destination, which would be the latest leaving in force were it A's."""
    return Case(
        own=[
            left(destination=NEXT_SCHOOL, time="2026-07-17T15:00:00+01:00"),
            transfer(recipient=NEXT_SCHOOL, time="2026-07-21T09:30:00+01:00"),
        ],
        others_fact=left(
            left_on="2026-07-18",
            destination=ELSEWHERE,
            source=OTHER_SCHOOL,
            time="2026-07-18T15:00:00+01:00",
        ),
        alone=("allowed", []),
        decides=("breach", ["transfer.wrong_destination"]),
    )


def _destroyed() -> Case:
    return Case(
        own=[referral(categories=["personal"], time="2026-07-21T09:30:00+01:00")],
        others_fact=destroyed(
            categories=["*"], source=OTHER_SCHOOL, time="2026-07-10T09:00:00+01:00"
        ),
        alone=("allowed", []),
        decides=("breach", ["record.destroyed"]),
    )


#: Every kind of fact, by name: fresh events (fresh ids) each time a case is made.
CASES: dict[str, Callable[[], Case]] = {
    "consent_given": _consent_given,
    "consent_withdrawn": _consent_withdrawn,
    "left": _left,
    "left_destination": _destination,
    "destroyed": _destroyed,
}


def verdict(decision: Any) -> tuple[str, list[str]]:
    """A decision as (verdict, rule ids), to compare with a case's."""
    return decision.decision.value, [r.value for r in decision.rules]


def _sharing(make: Callable[..., Event], **fixed: Any) -> Callable[..., Event]:
    def event(pupil: str, other: str, **kw: Any) -> Event:
        return make(pupils=[{"upn": pupil}], **fixed, **kw)

    return event


def _fact(make: Callable[..., Event], **fixed: Any) -> Callable[..., Event]:
    def event(pupil: str, other: str, **kw: Any) -> Event:
        return make(pupil=pupil, **fixed, **kw)

    return event


def _leaving(destination: str) -> Callable[..., Event]:
    def event(pupil: str, other: str, **kw: Any) -> Event:
        return left(pupil=pupil, left_on=kw["time"][:10], destination=destination, **kw)

    return event


def _census(pupil: str, other: str, **kw: Any) -> Event:
    return census(pupils=[{"upn": pupil}, {"upn": other}], **kw)


#: Whatever either school may record of a pupil (a census of two), given the pupils, the
#: school and the time.
TRUST_EVENTS: list[Callable[..., Event]] = [
    _fact(consent_given),
    _fact(consent_withdrawn),
    _leaving(NEXT_SCHOOL),
    _leaving(ELSEWHERE),
    _fact(destroyed, categories=["medical"]),
    _sharing(_consent_referral_at),
    _sharing(transfer),
    _census,
]


@st.composite
def trust_events(draw: st.DrawFn, pupil: str, other: str) -> list[Event]:
    """A few events of two schools about the same two pupils, in any arrival order."""
    events = []
    for _ in range(draw(st.integers(1, 12))):
        make = draw(st.sampled_from(TRUST_EVENTS))
        source = draw(st.sampled_from((SCHOOL, OTHER_SCHOOL)))
        day = draw(st.integers(1, 28))
        events.append(make(pupil, other, source=source, time=f"2026-07-{day:02d}T09:00:00Z"))
    return events
