"""Turning what a person typed into :class:`Filters`, or a message saying what is wrong.

Shared by the command line, the API and the pages, so ``--until 2026-07-21`` and
``?until=2026-07-21`` mean the same instant. A date means midnight at the start of that
day in England (the school's day, across both clock changes); a time needs its UTC
offset. A UPN is checked, then replaced by its pseudonym: the plain UPN goes no further.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, time

from pipeline.ledger.reading.queries import Filters
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.store import utc_text
from pipeline.register import check_upn
from pipeline.schooltime import SCHOOL_TIME
from schemas.decisions import Verdict
from schemas.events import EVENT_TYPES

#: A pupil's pseudonym, as the ledger and its answers name them.
PSEUDONYM_PATTERN = r"^[0-9a-f]{64}$"
_PSEUDONYM = re.compile(PSEUDONYM_PATTERN)

#: The kinds a search may ask for: every kind of entry.
KINDS = tuple(EntryKind)


class BadFilter(ValueError):
    """A filter that cannot be used; the message names it and says what would do."""


def instant(value: str, name: str) -> str:
    """An RFC 3339 instant or a date (midnight in England) as the ledger's UTC text."""
    unusable = BadFilter(f"{name} {value!r}: give a date (2026-07-21) or an RFC 3339 time")
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), time.min, SCHOOL_TIME)
        else:
            moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise unusable from None
    if moment.tzinfo is None:
        raise BadFilter(f"{name} {value!r}: a time needs a UTC offset, e.g. 2026-07-21T09:00:00Z")
    try:
        return utc_text(moment)
    except OverflowError:  # at the very ends of the calendar
        raise unusable from None


def event_type(value: str, name: str = "type") -> str:
    """An event type, or the one event type having ``value`` as a word (``transferred``)."""
    if value in EVENT_TYPES:
        return value
    matches = [t for t in EVENT_TYPES if value in t.split(".")]
    if len(matches) != 1:
        raise BadFilter(f"{name} {value!r}: give one of {', '.join(EVENT_TYPES)} or a word of one")
    return matches[0]


def names_a_upn(names: Iterable[str]) -> bool:
    """Whether a URL's query names a UPN: refused wherever it comes, since access logs and
    browser histories keep URLs (a UPN is taken in a form or a body)."""
    return any(name.lower() == "upn" for name in names)


def given_pseudonym(value: str, name: str = "pupil") -> str:
    """``value`` if it is a pupil's pseudonym, as a search page's address carries one."""
    if not _PSEUDONYM.match(value):
        raise BadFilter(f"{name}: not a pupil's pseudonym")
    return value


def pupil_key(upn: str, pseudonym: Callable[[str], str], name: str = "pupil") -> str:
    problem = check_upn(upn.strip())[1]
    if problem is not None:
        raise BadFilter(f"{name}: not a valid UPN ({problem})")
    return pseudonym(upn.strip())


def filters_from(
    pseudonym: Callable[[str], str],
    *,
    upn: str | None = None,
    pupil: str | None = None,
    recipient: str | None = None,
    event_type_: str | None = None,
    decision: str | None = None,
    rule: str | None = None,
    category: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
    after: int = 0,
    names: dict[str, str] | None = None,
) -> Filters:
    """Filters from text as typed (empty text counts as not given). A pupil is given by
    UPN (checked, then pseudonymised) or as ``pupil``, a pseudonym already.

    ``names`` maps a filter to the name the person used for it (``--type``, ``type``),
    so the message speaks their language.
    """
    said = {"upn": "pupil", "event_type": "type", **(names or {})}
    given = {
        k: (v.strip() or None) if isinstance(v, str) else v
        for k, v in {
            "upn": upn,
            "recipient": recipient,
            "event_type": event_type_,
            "decision": decision,
            "rule": rule,
            "category": category,
            "kind": kind,
            "since": since,
            "until": until,
        }.items()
    }
    verdicts = [v.value for v in Verdict]
    if given["decision"] is not None and given["decision"] not in verdicts:
        raise BadFilter(
            f"{said.get('decision', 'decision')} {given['decision']!r}: "
            f"one of {', '.join(verdicts)}"
        )
    if given["kind"] is not None and given["kind"] not in KINDS:
        raise BadFilter(f"{said.get('kind', 'kind')} {given['kind']!r}: one of {', '.join(KINDS)}")
    if after < 0:
        raise BadFilter(f"{said.get('after', 'after')} {after}: a seq, 0 or more")
    if given["upn"] and pupil:
        raise BadFilter(f"{said['upn']}: give the UPN or the pupil's pseudonym, not both")
    return Filters(
        pupil_key=pupil_key(given["upn"], pseudonym, said["upn"])
        if given["upn"]
        else given_pseudonym(pupil, said.get("pupil", "pupil"))
        if pupil
        else None,
        recipient=given["recipient"],
        event_type=event_type(given["event_type"], said["event_type"])
        if given["event_type"]
        else None,
        decision=given["decision"],
        rule=given["rule"],
        category=given["category"],
        kind=given["kind"],
        since=instant(given["since"], said.get("since", "since")) if given["since"] else None,
        until=instant(given["until"], said.get("until", "until")) if given["until"] else None,
        after_seq=after,
    )
