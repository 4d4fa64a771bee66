"""Who an incident is about: the pupils its events concerned, for the families to be told
(UK GDPR Art 34). Pure: the caller reads the entries and the identity rows.

A reason names a pupil by place in the event's list (``pupils[2]``), never by UPN. Where
every part of the reason for the incident's rule names places, only the pupils at those
places were concerned (a census with two pupils' consent missing concerns two families,
not three hundred); a reason that names no place is about the event as a whole, and
concerns every pupil in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from pipeline.ledger.records.entry import Entry
from pipeline.ledger.storage.store import from_utc_text
from pipeline.policy.rules import places_named
from pipeline.schooltime import school_day, shown_day

#: How a reason names a pupil: by place in the event's list (a rejected event's reasons
#: name the place of the invalid value, ``data.pupils[2].upn``).
#: The columns of the families-to-notify list, in order.
FAMILIES_COLUMNS = ("upn", "date_of_birth", "school_urn", "incident", "events")
ERASED = "(erased)"


@dataclass(frozen=True, slots=True)
class Concerned:
    """An event of the incident that concerned a pupil."""

    event_id: str | None
    event_type: str | None
    occurred_at: str | None  # the ledger's UTC text


@dataclass(frozen=True, slots=True)
class AffectedPupil:
    """A pupil an incident concerned, as the identity table knows them: ``upn`` and
    ``dob`` are None once the pupil was erased (the pseudonym stays)."""

    pupil_key: str
    upn: str | None
    dob: str | None
    schools: tuple[str, ...]
    events: tuple[Concerned, ...]


def places_concerned(entry: Entry, rule: str) -> set[int] | None:
    """The places in ``entry``'s list of pupils that the reason for ``rule`` names; None
    when it concerns every pupil in it (a part names no place, or the rule is not the
    entry's)."""
    reason = dict(zip(entry.rules, entry.reasons, strict=False)).get(rule)
    if reason is None:
        return None
    places: set[int] = set()
    for part in reason.split("; "):
        named = places_named(part)
        if not named:
            return None
        places |= named
    return places


def affected_pupils(
    entries: Iterable[Entry], rule: str, identities: Mapping[str, tuple[str, str | None]]
) -> list[AffectedPupil]:
    """The pupils ``entries`` (an incident's) concerned by breaking ``rule``, each with
    the events that concerned them (an event re-decided counts once), in the order they
    first appear. ``identities``: (UPN, date of birth) by pseudonym, as
    :meth:`Ledger.identities` gives them."""
    schools: dict[str, dict[str, None]] = {}
    events: dict[str, dict[str, Concerned]] = {}
    for entry in sorted(entries, key=lambda e: e.seq):
        places = places_concerned(entry, rule)
        event = Concerned(entry.event_id, entry.event_type, entry.occurred_at)
        for place, key in enumerate(entry.pupil_keys):
            if places is not None and place not in places:
                continue
            if entry.school:
                schools.setdefault(key, {})[entry.school] = None
            events.setdefault(key, {}).setdefault(entry.event_id or str(entry.seq), event)
    found = []
    for key, concerned in events.items():
        upn, dob = identities.get(key, (None, None))
        shown = tuple(concerned.values())
        found.append(AffectedPupil(key, upn, dob, tuple(schools.get(key, {})), shown))
    return found


def families_rows(
    incident_id: int, pupils: Sequence[AffectedPupil], named: Callable[[str | None], str]
) -> Iterator[list[str]]:
    """One row of :data:`FAMILIES_COLUMNS` per pupil: what a letter to the family needs.
    ``named``: an event type as a person reads it. The date of birth stays ISO, which no
    spreadsheet reads the wrong way round."""
    for pupil in pupils:
        events = "; ".join(f"{named(e.event_type)}, {event_day(e)}" for e in pupil.events)
        yield [
            pupil.upn or ERASED,
            pupil.dob or "",
            ", ".join(pupil.schools),
            str(incident_id),
            events,
        ]


def event_day(event: Concerned) -> str:
    """The (UK) day the event happened, as a person writes it."""
    if event.occurred_at is None:
        return "date not known"
    return shown_day(school_day(from_utc_text(event.occurred_at)))
