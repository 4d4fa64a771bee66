"""How values are shown to people.

Untrusted text made safe to show at a terminal, in a log line or a file an operator reads
(a file's name, an event's field, a form's value); and the one catalogue of plain names
that the desk's pages, the reports and the notices share, so that a DPO reads "no consent
on record" where the ledger holds ``consent.missing``, and "Thu 16 Oct 2025, 13:30 BST"
where it holds ``2025-10-16T12:30:00.000000Z``. Event types, rules, lawful bases, Art 9
conditions and channels are named from the contract's catalogue; recipients by the names
their school's pack gives them, schools by the register's. The ids themselves stay in the
ledger, the exports and each page's "Technical details".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from pipeline.policy.pack import Policy, is_school
from pipeline.policy.rules import PUPIL_PLACE
from pipeline.policy.schools import Schools, policy_of
from pipeline.schooltime import shown_day, shown_in_school_time
from schemas.alerts import MERGE_DELAY_MISSED_CAUSE, RETENTION_DUE_CAUSE, WITNESS_REFUSED_CAUSE
from schemas.events import (
    CENSUS,
    CONSENT_GIVEN,
    CONSENT_WITHDRAWN,
    LEFT,
    RECORD_DESTROYED,
    REFERRAL,
    TRANSFER,
)

if TYPE_CHECKING:
    from jinja2 import Environment

# C0 and C1 controls (escape sequences start with ESC or CSI), DEL, and the Unicode line
# separators and bidirectional overrides that make text read otherwise than it is; and
# lone surrogates, which is how Python holds the bytes of a file name that is not UTF-8:
# they cannot be written as UTF-8 at all, to a terminal, a log or a reason's file.
_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
NOTHING = "\u2013"


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown_text(value: object) -> str:
    """``value`` as text safe to write to a terminal: every control character written as
    its escape (``\\x1b``), so none moves the cursor, clears the screen or sets a title."""
    return _UNSHOWABLE.sub(_escaped, "-" if value is None else str(value))


# -- the catalogue ---------------------------------------------------------------------------

EVENTS = {
    CENSUS: "census return",
    TRANSFER: "record sent to the next school",
    REFERRAL: "referral",
    LEFT: "left the school",
    CONSENT_GIVEN: "consent given",
    CONSENT_WITHDRAWN: "consent withdrawn",
    RECORD_DESTROYED: "records destroyed",
}

#: Each rule of the contract's catalogue by what went wrong, and the log's own causes.
RULES = {
    "event.invalid": "not a valid event",
    "event.id_reused": "an event id used again for other content",
    "pupil.invalid_upn": "not a valid UPN",
    "recipient.unknown": "a recipient the policy does not know",
    "recipient.not_permitted": "a recipient not permitted for this sharing",
    "category.unknown": "data of a kind the policy does not define",
    "category.not_permitted": "data this recipient may not receive",
    "basis.not_permitted": "a lawful basis not allowed here",
    "special.no_condition": "special category data without an allowed Art 9 condition",
    "consent.missing": "no consent on record",
    "consent.withdrawn": "consent had been withdrawn",
    "transfer.no_destination": "no recorded school to send the record to",
    "transfer.wrong_destination": "record sent somewhere other than the pupil's new school",
    "transfer.late": "record sent late",
    "retention.expired": "data kept past its retention period",
    "record.destroyed": "data shared after it was recorded destroyed",
    "channel.not_permitted": "sent by a way not allowed",
    WITNESS_REFUSED_CAUSE: "a witness refused the log's history",
    MERGE_DELAY_MISSED_CAUSE: "the log missed its promised merge delay",
    RETENTION_DUE_CAUSE: "records kept past their retention period, to destroy",
}

#: UK GDPR Art 6(1).
BASES = {
    "consent": "consent",
    "contract": "contract",
    "legal_obligation": "legal obligation",
    "vital_interests": "vital interests",
    "public_task": "public task",
    "legitimate_interests": "legitimate interests",
}

#: UK GDPR Art 9(2).
CONDITIONS = {
    "9.2.a": "explicit consent",
    "9.2.b": "employment and social protection",
    "9.2.c": "vital interests",
    "9.2.g": "substantial public interest",
    "9.2.h": "health or social care",
    "9.2.j": "archiving and research",
}

CHANNELS = {
    "s2s": "DfE School to School (S2S)",
    "collect": "DfE COLLECT",
    "secure_email": "secure email",
    "email": "plain email",
    "post": "post",
    "portal": "portal",
    "in_person": "in person",
}

#: The categories of the shipped pack whose names are not words a parent reads as such.
CATEGORIES = {"personal": "personal details", "sen": "special educational needs (SEN)"}

#: Where a retention period is counted from (the pack's ``counted_from``), said short.
COUNTED_FROM = {"left": "from leaving", "dob": "from birth", "record": "from the record"}

#: What each kind of ledger entry records.
KINDS = {
    "decision": "decision",
    "reevaluation": "decision made again",
    "read": "look at the records",
    "incident_action": "action on an incident",
    "user_action": "change of users",
    "witness_refusal": "a witness's refusal",
    "merge_delay_missed": "merge delay missed",
    "retention_due": "records past their retention period",
    "key_rotated": "pseudonym key replaced",
    "erasure": "erasure of a pupil",
    "pack_adopted": "adoption of a policy",
    "notice_published": "privacy notice published",
}

#: Why a pupil was erased (an ``erasure`` entry's ``rule``).
ERASURE_RULES = {
    "request": "at the family's request (Art 17)",
    "retention": "at the end of the ledger's own retention",
}

#: The desk's words: an incident's status, an action on it, the risk assessed.
STATUSES = {"subjects_notified": "families notified"}
ACTIONS = {
    "acknowledge": "acknowledged",
    "assess": "assessed",
    "report": "reported to the ICO",
    "notify_subjects": "families notified",
    "close": "closed",
}
RISKS = {"no_risk": "no risk", "risk": "a risk", "high_risk": "a high risk"}
#: A change of users (a ``user_action`` entry's ``action``), as "added: Dana".
USER_CHANGES = {
    "add": "added",
    "revoke": "revoked",
    "rotate": "given a new token",
    "signin": "signed in",
}
ROLES = {"dpo": "DPO", "auditor": "auditor", "admin": "administrator"}

#: What a look at the records was (a read's ``action``), as "Dana searched the ledger".
READS = {
    "search": "searched the ledger",
    "export": "downloaded a search",
    "open": "opened an entry",
    "incident": "opened an incident",
    "sar": "ran a subject-access report",
    "ropa": "ran the record of processing",
    "readers": "asked who read a pupil's record",
    "reconcile": "reconciled the school's records",
    "bundle": "took a bundle for auditors",
    "reveal_pupils": "revealed the pupils of an incident",
    "what_if": "replayed the sharing under a candidate policy",
    "notice_check": "compared the privacy notice with the sharing",
}


def _named(table: Mapping[str, str], value: object) -> str:
    """``value`` by its name in ``table``; one the table lacks, as its words."""
    if value is None or value == "":
        return NOTHING
    text = str(value)
    return table.get(text) or text.replace("_", " ")


def event_name(event_type: str | None) -> str:
    return _named(EVENTS, event_type)


def rule_name(rule: str | None) -> str:
    return _named(RULES, rule)


def basis_name(basis: str | None) -> str:
    return _named(BASES, basis)


def condition_name(condition: str | None) -> str:
    return _named(CONDITIONS, condition)


def channel_name(channel: str | None) -> str:
    return _named(CHANNELS, channel)


def category_name(category: str | None) -> str:
    return "every category" if category == "*" else _named(CATEGORIES, category)


def counted_from_name(counted_from: str | None) -> str:
    return _named(COUNTED_FROM, counted_from)


def names(values: Iterable[str] | None, name: Callable[[str], str] = category_name) -> str:
    """Several values by name, in the order given: "personal details, medical"."""
    return ", ".join(name(v) for v in values or ()) or NOTHING


def school_name(urn: str | None, schools: Schools | None = None) -> str:
    """A school by the register's name for it, with its URN; "school 116234" where the
    register does not name it."""
    if not urn:
        return NOTHING
    named = schools.names.get(urn) if schools is not None else None
    return f"{named} (URN {urn})" if named else f"school {urn}"


def plain_recipient(recipient: str) -> str:
    """A recipient the pack does not name, by the id's form in the contract."""
    kind, _, rest = recipient.partition(":")
    if recipient == "dfe":
        return "Department for Education"
    if kind == "la" and rest:
        return f"local authority {rest}"
    if kind == "agency" and rest:
        return f"{rest.replace('-', ' ')} (an agency)"
    return recipient


def recipient_name(
    recipient: str | None, policy: Policy | None = None, schools: Schools | None = None
) -> str:
    """Who received the data, as ``policy`` (the sharing school's pack) names them: a
    school by its own name or URN, since the pack names only the kind ("the school the
    pupil moves to"); a recipient the pack does not know as its id says plainly."""
    if not recipient:
        return NOTHING
    if is_school(recipient):
        return school_name(recipient.removeprefix("school:"), schools)
    key = policy.recipient_key(recipient) if policy is not None else None
    return (policy.recipient_name(key) if policy is not None and key else None) or (
        plain_recipient(recipient)
    )


# -- times -----------------------------------------------------------------------------------


def moment_of(value: datetime | str) -> datetime:
    """An instant from the ledger's UTC text, any ISO 8601 time, or a datetime (one with
    no offset is UTC, as the ledger keeps it)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def when(value: datetime | str | None) -> str:
    """An instant as an English school's clocks show it: "Thu 16 Oct 2025, 13:30 BST"."""
    return shown_in_school_time(moment_of(value)) if value else NOTHING


def day(value: date | str | None, weekday: bool = True) -> str:
    """A calendar day as the school writes it: "Thu 16 Oct 2025" ("16 Oct 2025" without
    the ``weekday``, for a date of birth)."""
    if not value:
        return NOTHING
    return shown_day(value if isinstance(value, date) else date.fromisoformat(value), weekday)


_INSTANT = re.compile(
    r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)",
)
_DAY = re.compile(r"\b\d{4}-\d\d-\d\d\b")
#: A recipient's id as a reason quotes it ("covering agency:school-nursing").
_RECIPIENT_ID = re.compile(r"(?<![\w:])(?:agency|la|school):[A-Za-z0-9._-]*[A-Za-z0-9]")
_PLACEHOLDER = re.compile(r"\{(URN|LA)\}")  # a pack's ids, as a reason may quote them
#: The ids a reason quotes that are not words (a lawful basis, an Art 9 condition, a
#: channel, an event's field), by their names; the ones that are words stay as they are.
_QUOTED = {
    **{k: v for k, v in (*BASES.items(), *CHANNELS.items()) if k != v and k not in ("email",)},
    **CONDITIONS,
    "special_condition": "condition under Art 9",
    "consent_ref": "consent reference",
    "lawful_basis": "lawful basis",
}
_QUOTED_ID = re.compile(
    r"(?<![\w.:-])("
    + "|".join(re.escape(k) for k in sorted(_QUOTED, key=len, reverse=True))
    + r")(?![\w-]|\.\w)"
)


def _day_or_as_is(match: re.Match[str]) -> str:
    try:
        return day(match.group())
    except ValueError:
        return match.group()


def reason_said(reason: str | None) -> str:
    """A rule's reason (or a report's note) as the engine wrote it, in the catalogue's
    words: its times and days on the school's clock, the bases, conditions and channels it
    quotes by name, and each pupil by their place in the event counted from one ("pupil
    2"), not from zero as the event's JSON counts them."""
    if not reason:
        return NOTHING
    said = _INSTANT.sub(lambda m: when(m.group()), reason)
    said = _DAY.sub(_day_or_as_is, said)
    said = _PLACEHOLDER.sub(r"\1", said)
    said = _QUOTED_ID.sub(lambda m: _QUOTED[m.group()], said)
    return PUPIL_PLACE.sub(lambda m: f"pupil {int(m.group(1)) + 1}", said)


# -- on pages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Naming:
    """The packs and register a page names recipients and schools by: each entry's
    recipient is named by the pack of the school that shared it."""

    policy: Policy | None = None
    schools: Schools | None = None

    def recipient(
        self, recipient: str | None, school: str | None = None, named: str | None = None
    ) -> str:
        """``recipient`` as ``school``'s pack names it; ``named``: the name a report
        already found for it in that pack."""
        if named and recipient and not is_school(recipient):
            return named
        own = policy_of(self.schools, school, self.policy) if self.policy is not None else None
        return recipient_name(recipient, own, self.schools)

    def school(self, urn: str | None) -> str:
        return school_name(urn, self.schools)


#: The name a page's context gives its :class:`Naming`; without one, no pack names.
NAMING = "naming"

FILTERS: dict[str, Any] = {
    "uk": when,
    "day": day,
    "what": event_name,
    "rule": rule_name,
    "basis": basis_name,
    "art9": condition_name,
    "channel": channel_name,
    "category": category_name,
    "categories": names,
    "reason": reason_said,
    "kind": lambda kind: _named(KINDS, kind),
    "status": lambda status: _named(STATUSES, status),
    "action": lambda action: _named(ACTIONS, action),
    "risk": lambda risk: _named(RISKS, risk),
    "role": lambda role: _named(ROLES, role),
    "read": lambda action: _named(READS, action),
    "user_change": lambda action: _named(USER_CHANGES, action),
    "erasure_rule": lambda rule: _named(ERASURE_RULES, rule),
}


def install(env: Environment) -> None:
    """Give ``env`` (the pages' or the reports') the catalogue's filters: one set of
    names, whoever renders. ``recipient`` and ``school`` name by the :class:`Naming` in
    the page's context (:data:`NAMING`), if any. Jinja is imported here, not by the
    command line, which shows rules and times without it."""
    from jinja2 import pass_context
    from jinja2.runtime import Context

    def naming(context: Context) -> Naming:
        found = context.get(NAMING)
        return found if isinstance(found, Naming) else Naming()

    @pass_context
    def recipient(
        context: Context, recipient: str | None, school: str | None = None, named: str | None = None
    ) -> str:
        return naming(context).recipient(recipient, school, named)

    @pass_context
    def school(context: Context, urn: str | None) -> str:
        return naming(context).school(urn)

    @pass_context
    def reason(context: Context, text: str | None, school: str | None = None) -> str:
        """:func:`reason_said`, with the recipients it quotes by their names too."""
        named = naming(context)
        said = reason_said(text)
        return _RECIPIENT_ID.sub(lambda m: named.recipient(m.group(), school), said)

    env.filters.update(FILTERS, recipient=recipient, school=school, reason=reason)
