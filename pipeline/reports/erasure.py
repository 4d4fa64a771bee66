"""What the family is told of an erasure: a statement made from the erasure entry alone.

Once a pupil is erased nothing in the ledger recognises their UPN (that is the point), so
no search or subject-access report by it can say that the data was erased: the statement
is given when the erasure is made, and can be printed again by its reference, the
erasure's entry. It names the school (or schools) whose entries named the pupil, the
day, the rule, who erased and the reference; never the UPN, which is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from pipeline.ledger.reading.queries import entry_at
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.store import ENTRY, PUPIL, from_utc_text
from pipeline.policy.schools import Controller, Schools, controller_of
from pipeline.schooltime import school_day, shown_day

#: The rule an erasure was made under, as the family reads it.
RULES_SAID = {
    "request": "the right to erasure (a request under UK GDPR Article 17)",
    "retention": "the ledger's own retention period (storage limitation, UK GDPR Article 5(1)(e))",
}


@dataclass(frozen=True, slots=True)
class Statement:
    """An erasure as the family is told of it: ``text`` says it all in one sentence."""

    seq: int
    schools: list[str]
    day: str
    rule: str
    by: str
    entries: int
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "erasure": self.seq,
            "schools": self.schools,
            "on": self.day,
            "rule": self.rule,
            "by": self.by,
            "entries": self.entries,
            "statement": self.text,
        }


def schools_naming(connection: Connection, pupil_key: str) -> list[str]:
    """The URNs of the schools whose entries name the pupil, in order."""
    rows = connection.execute(
        select(ENTRY.c.school)
        .join(PUPIL, PUPIL.c.seq == ENTRY.c.seq)
        .where(PUPIL.c.pupil_key == pupil_key, ENTRY.c.school.is_not(None))
        .distinct()
    ).scalars()
    return sorted(rows)


def _school_said(urn: str, register: Schools | None, school: Controller | None) -> str:
    named = controller_of(register, urn, school).name
    return f"{named} (URN {urn})" if named else f"school {urn}"


def erasure_statement(
    connection: Connection,
    seq: int,
    scope: tuple[str, ...] | None = None,
    register: Schools | None = None,
    school: Controller | None = None,
) -> Statement | None:
    """The statement of erasure entry ``seq``; None when ``seq`` is no erasure, or one of
    a pupil none of whose entries are of ``scope`` (a reader confined to those schools).
    Schools are named as the register gives them, else as ``school`` (the deployment's
    one school, from its settings) does."""
    entry = entry_at(connection, seq)
    if entry is None or entry.kind != EntryKind.ERASURE or not entry.pupil_keys:
        return None
    urns = schools_naming(connection, entry.pupil_keys[0])
    if scope is not None and not set(urns) & set(scope):
        return None
    details = entry.details or {}
    day = school_day(from_utc_text(entry.recorded_at))
    rule = str(details.get("rule", ""))
    by = str(details.get("by", ""))
    named = " and ".join(_school_said(urn, register, school) for urn in urns) or "the school"
    text = (
        f"The data of the pupil was erased from the audit ledger of {named} on "
        f"{shown_day(day)} under {RULES_SAID.get(rule, rule)}, by {by}; "
        f"reference: erasure entry {seq}."
    )
    entries = int(details.get("entries", 0))
    return Statement(seq, urns, day.isoformat(), rule, by, entries, text)


#: What an erasure cannot undo, said before it is made (the command, the desk).
CANNOT_UNDO = (
    "The pupil's UPN and date of birth are deleted from the ledger.",
    "No search, subject-access report or other report will find the pupil again.",
    "The pupil's entries stay, naming a pseudonym that leads to no one.",
    "The erasure itself is recorded in the ledger, with your name and your reason.",
)
#: What the reason for an erasure must not hold, said where it is asked for.
REASON_HINT = "Do not write the pupil's name or date of birth: the reason is kept for ever."
