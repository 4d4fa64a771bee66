"""The pupil register: lifecycle facts, each in force from its event's time.

The decision engine asks the register questions *as of an instant* (the sharing event's
time), never "now", so a decision depends only on the facts timed at or before the event,
whatever order they arrived in. Pure: no I/O. Adapters fill it from the ledger database.

Pupils are looked up by a key made from their normalised UPN by ``pupil_key`` (a keyed
pseudonym in the persisted register), so the register never needs to hold a plain UPN.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

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


class Register:
    """Lifecycle facts by pupil key."""

    def __init__(self, pupil_key: Callable[[str], str] = normalise_upn) -> None:
        self.pupil_key = pupil_key
        self._pupils: dict[str, PupilFacts] = {}

    def add(self, upn: str, fact: Fact) -> str:
        """Record ``fact`` for the pupil; returns the pupil's key."""
        key = self.pupil_key(upn)
        self.add_keyed(key, fact)
        return key

    def add_keyed(self, key: str, fact: Fact) -> None:
        """Record a fact under a pupil key already made (when loading a persisted register)."""
        facts = self._pupils.get(key)
        if facts is None:
            facts = self._pupils[key] = PupilFacts()
        facts.add(fact)

    def add_all(self, keyed_facts: Iterable[tuple[str, Fact]]) -> None:
        for key, fact in keyed_facts:
            self.add_keyed(key, fact)

    def facts(self, upn: str) -> PupilFacts:
        """The pupil's facts (empty when none are recorded); ``upn`` must be valid."""
        return self.facts_of(self.pupil_key(upn))

    def facts_of(self, key: str) -> PupilFacts:
        """The facts of the pupil whose key is ``key`` (empty when none are recorded)."""
        return self._pupils.get(key, NO_FACTS)
