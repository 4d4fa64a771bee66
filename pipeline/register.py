"""The pupil register: lifecycle facts, each in force from its event's time.

The decision engine asks the register questions *as of an instant* (the sharing event's
time), never "now", so a decision depends only on the facts timed at or before the event,
whatever order they arrived in. Pure: no I/O. Adapters fill it from the ledger database.

Pupils are looked up by a key made from their normalised UPN by ``pupil_key`` (a keyed
pseudonym in the persisted register), so the register never needs to hold a plain UPN.

Facts belong to the school that recorded them (the contract's Clarifications of
2026-12-06): consent is given to a controller, and each school is the controller of what
it shares. So every fact is held under the URN of its event's source school as well as
the pupil, and a school's events are decided by that school's facts alone: a pupil who
moved between two schools of a trust has two sets of facts.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import NamedTuple

from stdnum.exceptions import (
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    ValidationError,
)
from stdnum.gb import upn as stdnum_upn

from schemas.events import (
    ConsentGiven,
    ConsentWithdrawn,
    LifecycleEvent,
    PupilLeft,
    RecordDestroyed,
)

WHOLE_RECORD = "*"

_UPN_PROBLEMS: dict[type[ValidationError], str] = {
    InvalidLength: "is not 13 characters long",
    InvalidFormat: "is not in the UPN format (a check letter, 11 digits, then a digit or letter)",
    InvalidComponent: "has an LA number that is not a real local authority",
    InvalidChecksum: "has the wrong check letter",
}


@lru_cache(maxsize=200_000)
def check_upn(upn: str) -> tuple[str | None, str | None]:
    """``(normalised UPN, None)`` for a valid UPN, or ``(None, what is wrong)``.

    The problem text never repeats the UPN, so it is safe for logs and error messages.
    Cached: the same pupils recur in a school's events day after day.
    """
    try:
        return stdnum_upn.validate(upn), None
    except ValidationError as exc:
        return None, _UPN_PROBLEMS.get(type(exc), "is not a valid UPN")


def normalise_upn(upn: str) -> str:
    """The canonical spelling of a valid UPN (upper case, no spaces)."""
    normal, problem = check_upn(upn)
    if normal is None:
        raise ValueError(f"not a valid UPN: {problem}")
    return normal


@dataclass(frozen=True, slots=True, order=True)
class Leaving:
    at: datetime
    event_id: str
    left_on: date
    destination: str


@dataclass(frozen=True, slots=True, order=True)
class ConsentGrant:
    at: datetime
    event_id: str
    ref: str
    recipients: frozenset[str]
    categories: frozenset[str]


@dataclass(frozen=True, slots=True, order=True)
class ConsentWithdrawal:
    at: datetime
    event_id: str
    ref: str


@dataclass(frozen=True, slots=True, order=True)
class Destruction:
    at: datetime
    event_id: str
    categories: frozenset[str]


Fact = Leaving | ConsentGrant | ConsentWithdrawal | Destruction


def fact_of(event: LifecycleEvent) -> tuple[str, Fact]:
    """The pupil's UPN (as given) and the fact a valid lifecycle event records."""
    d = event.data
    fact: Fact
    if isinstance(event, PupilLeft):
        fact = Leaving(event.time, event.id, event.data.left_on, event.data.destination)
    elif isinstance(event, ConsentGiven):
        fact = ConsentGrant(
            event.time,
            event.id,
            event.data.consent_ref,
            frozenset(event.data.recipients),
            frozenset(event.data.categories),
        )
    elif isinstance(event, ConsentWithdrawn):
        fact = ConsentWithdrawal(event.time, event.id, event.data.consent_ref)
    elif isinstance(event, RecordDestroyed):
        fact = Destruction(event.time, event.id, frozenset(event.data.categories))
    else:  # pragma: no cover - the union is exhaustive
        raise TypeError(type(event).__name__)
    return d.upn, fact


@dataclass(slots=True)
class PupilFacts:
    """One pupil's facts, each list kept in (time, event id) order, queried as of an instant."""

    leavings: list[Leaving] = field(default_factory=list)
    grants: list[ConsentGrant] = field(default_factory=list)
    withdrawals: list[ConsentWithdrawal] = field(default_factory=list)
    destructions: list[Destruction] = field(default_factory=list)

    def add(self, fact: Fact) -> None:
        if isinstance(fact, Leaving):
            insort(self.leavings, fact)
        elif isinstance(fact, ConsentGrant):
            insort(self.grants, fact)
        elif isinstance(fact, ConsentWithdrawal):
            insort(self.withdrawals, fact)
        else:
            insort(self.destructions, fact)

    def leaving(self, at: datetime) -> Leaving | None:
        """The latest leaving fact in force at ``at`` (ties broken by event id)."""
        found = None
        for fact in self.leavings:
            if fact.at > at:
                break
            found = fact
        return found

    def consent_covers(
        self, ref: str, at: datetime, recipient: str, categories: Iterable[str]
    ) -> bool:
        """Whether consent ``ref`` was given by ``at`` for ``recipient`` and every category."""
        wanted = set(categories)
        for grant in self.grants:
            if grant.at > at:
                break
            if grant.ref == ref and recipient in grant.recipients and wanted <= grant.categories:
                return True
        return False

    def withdrawal(self, ref: str, at: datetime) -> ConsentWithdrawal | None:
        """The first withdrawal of consent ``ref`` at or before ``at``."""
        for fact in self.withdrawals:
            if fact.at > at:
                break
            if fact.ref == ref:
                return fact
        return None

    def destroyed(self, at: datetime) -> dict[str, Destruction]:
        """Category (or ``*``) to the first destruction of it at or before ``at``."""
        out: dict[str, Destruction] = {}
        for fact in self.destructions:
            if fact.at > at:
                break
            for category in fact.categories:
                out.setdefault(category, fact)
        return out


#: What a pupil without any recorded fact has.
NO_FACTS = PupilFacts()


class SchoolFact(NamedTuple):
    """A fact with whose it is: the URN of the school that recorded it, and the pupil's key."""

    school: str
    pupil: str
    fact: Fact


class Register:
    """Lifecycle facts by school (URN) and pupil key."""

    def __init__(self, pupil_key: Callable[[str], str] = normalise_upn) -> None:
        self.pupil_key = pupil_key
        self._pupils: dict[tuple[str, str], PupilFacts] = {}

    def add(self, school: str, upn: str, fact: Fact) -> str:
        """Record ``fact`` for the pupil at ``school``; returns the pupil's key."""
        key = self.pupil_key(upn)
        self.add_keyed(SchoolFact(school, key, fact))
        return key

    def add_keyed(self, held: SchoolFact) -> None:
        """Record a fact under a pupil key already made (when loading a persisted register)."""
        facts = self._pupils.get((held.school, held.pupil))
        if facts is None:
            facts = self._pupils[held.school, held.pupil] = PupilFacts()
        facts.add(held.fact)

    def add_all(self, held: Iterable[SchoolFact]) -> None:
        for one in held:
            self.add_keyed(one)

    def facts(self, school: str, upn: str) -> PupilFacts:
        """The facts ``school`` recorded of the pupil (empty when none); ``upn`` must be
        valid."""
        return self.facts_of(school, self.pupil_key(upn))

    def facts_of(self, school: str, key: str) -> PupilFacts:
        """The facts ``school`` recorded of the pupil whose key is ``key`` (empty when
        none): another school's facts of the same pupil are never among them."""
        return self._pupils.get((school, key), NO_FACTS)
