"""One small function per policy rule, in a table keyed by rule id.

Each rule looks at a :class:`Case` (a well-formed sharing event with what the policy and
the register say about it) and returns the reasons it is violated, or an empty list. A
reason names the offending value so a DPO can act on it, and refers to a pupil only by
position (``pupils[2]``), never by UPN.

The three gate rules (``event.invalid``, ``event.id_reused``, ``pupil.invalid_upn``)
reject an event before any of these run; they live in ``decide.py`` and the engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from pipeline.policy.calendar import add_period, earliest_unexpired, school_days_between
from pipeline.policy.pack import Permission, Policy, Retention
from pipeline.register import NO_FACTS, WHOLE_RECORD, Leaving, PupilFacts
from schemas.decisions import RuleId
from schemas.events import SharingEvent

_CONSENT_CONDITION = "9.2.a"
#: How a reason names a pupil (by place in the event, from 0; ``data.pupils[2]`` in the
#: gate's reasons): what pages, reports and the reveal read back.
PUPIL_PLACE = re.compile(r"(?:data\.)?pupils\[(\d+)\]")


def places_named(reason: str) -> set[int]:
    """The places of the pupils ``reason`` names (none: it concerns every pupil)."""
    return {int(n) for n in PUPIL_PLACE.findall(reason)}


@dataclass(slots=True)
class Case:
    """A well-formed sharing event and everything the rules ask about it."""

    event: SharingEvent
    kind: str
    policy: Policy
    facts: list[PupilFacts]
    recipient_key: str | None
    permission: Permission | None
    known: list[str]
    unknown: list[str]
    special: list[str]
    day: date

    _leavings: list[Leaving | None] | None = None

    @property
    def relies_on_consent(self) -> bool:
        d = self.event.data
        return d.lawful_basis == "consent" or d.special_condition == _CONSENT_CONDITION

    def leavings(self) -> list[Leaving | None]:
        """Each pupil's leaving fact in force at the event's time (computed once)."""
        if self._leavings is None:
            at = self.event.time
            self._leavings = [None if f is NO_FACTS else f.leaving(at) for f in self.facts]
        return self._leavings


Rule = Callable[[Case], list[str]]


def _names(values: list[str] | frozenset[str]) -> str:
    return ", ".join(sorted(values)) or "none"


def _a(kind: str) -> str:
    return {"census": "a census", "transfer": "a transfer", "referral": "a referral"}[kind]


def recipient_unknown(case: Case) -> list[str]:
    if case.recipient_key is not None:
        return []
    return [
        f"recipient {case.event.data.recipient!r} is not in the policy's registry "
        "and is not a school:{URN} with a 6-digit URN"
    ]


def recipient_not_permitted(case: Case) -> list[str]:
    if case.recipient_key is None or case.permission is not None:
        return []
    allowed = sorted(kind for rid, kind in case.policy.permissions if rid == case.recipient_key)
    return [
        f"{case.event.data.recipient} may not receive {_a(case.kind)} "
        f"(permitted for: {_names(allowed)})"
    ]


def category_unknown(case: Case) -> list[str]:
    return [f"category {c!r} is not defined by the policy" for c in case.unknown]


def category_not_permitted(case: Case) -> list[str]:
    if case.permission is None:
        return []
    refused = [c for c in case.known if c not in case.permission.categories]
    if not refused:
        return []
    return [f"{case.event.data.recipient} may not receive {_names(refused)} in {_a(case.kind)}"]


def basis_not_permitted(case: Case) -> list[str]:
    if case.permission is None:
        return []
    basis = case.event.data.lawful_basis
    if basis in case.permission.lawful_bases:
        return []
    return [
        f"lawful basis {basis.value!r} is not allowed for {case.event.data.recipient} in "
        f"{_a(case.kind)} (allowed: {_names(case.permission.lawful_bases)})"
    ]


def special_no_condition(case: Case) -> list[str]:
    if not case.special:
        return []
    condition = case.event.data.special_condition
    if condition is None:
        return [f"special category {_names(case.special)} shared without a special_condition"]
    if case.permission is not None and condition not in case.permission.special_conditions:
        return [
            f"condition {condition.value} is not allowed for {case.event.data.recipient} in "
            f"{_a(case.kind)} (allowed: {_names(case.permission.special_conditions)})"
        ]
    return []


def consent_missing(case: Case) -> list[str]:
    if not case.relies_on_consent:
        return []
    d = case.event.data
    if d.consent_ref is None:
        return ["consent is relied on but the event gives no consent_ref"]
    categories, at, ref = d.categories, case.event.time, d.consent_ref
    missing = [
        i
        for i, facts in enumerate(case.facts)
        if not facts.consent_covers(ref, at, d.recipient, categories)
    ]
    return [
        f"no consent {d.consent_ref!r} for pupils[{i}] given at or before the event "
        f"covering {d.recipient} and {_names(list(set(categories)))}"
        for i in missing
    ]


def consent_withdrawn(case: Case) -> list[str]:
    d = case.event.data
    if not case.relies_on_consent or d.consent_ref is None:
        return []
    reasons = []
    for i, facts in enumerate(case.facts):
        withdrawal = facts.withdrawal(d.consent_ref, case.event.time)
        if withdrawal is not None:
            reasons.append(
                f"consent {d.consent_ref!r} for pupils[{i}] was withdrawn at "
                f"{withdrawal.at.isoformat()}"
            )
    return reasons


def transfer_no_destination(case: Case) -> list[str]:
    if case.kind != "transfer":
        return []
    leaving = case.leavings()[0]
    if leaving is None:
        return ["no record that pupils[0] left the school at or before the transfer"]
    if leaving.destination == "unknown":
        return [f"pupils[0] left on {leaving.left_on} for an unknown destination"]
    return []


def transfer_wrong_destination(case: Case) -> list[str]:
    """Any recipient but the recorded destination school (an agency, the LA, an
    ill-formed school): the contract's clarification of 2026-11-30."""
    recipient = case.event.data.recipient
    if case.kind != "transfer":
        return []
    leaving = case.leavings()[0]
    if leaving is None or leaving.destination in ("unknown", recipient):
        return []
    return [f"sent to {recipient} but the recorded destination is {leaving.destination}"]


def transfer_late(case: Case) -> list[str]:
    if case.kind != "transfer":
        return []
    leaving = case.leavings()[0]
    if leaving is None:
        return []
    days = school_days_between(leaving.left_on, case.day, case.policy.closure_dates)
    if days <= case.policy.transfer_deadline:
        return []
    return [
        f"sent {days} school days after pupils[0] left on {leaving.left_on} "
        f"(limit {case.policy.transfer_deadline})"
    ]


def retention_expired(case: Case) -> list[str]:
    d = case.event.data
    reasons = []
    pupil_starts: dict[str, list[date | None]] = {}
    for category in case.known:
        retention = case.policy.retention_for(category)
        # Expired when start + period is strictly before the event's date.
        threshold = earliest_unexpired(case.day, retention.years, retention.months, retention.days)
        start: date | None
        if retention.counted_from == "record":
            start = d.oldest_record.get(category) if d.oldest_record else None
            if start is not None and start < threshold:
                reasons.append(
                    f"{category} records from {start} were kept past {retention.describe()} "
                    f"(until {_end(start, retention)})"
                )
            continue
        starts = pupil_starts.get(retention.counted_from)
        if starts is None:
            if retention.counted_from == "dob":
                starts = [p.get("dob") for p in d.pupils]
            else:
                starts = [lv.left_on if lv else None for lv in case.leavings()]
            pupil_starts[retention.counted_from] = starts
        for i, start in enumerate(starts):
            if start is not None and start < threshold:
                reasons.append(_kept_past(category, i, start, retention))
    return reasons


def record_destroyed(case: Case) -> list[str]:
    reasons = []
    for i, facts in enumerate(case.facts):
        if not facts.destructions:
            continue
        destroyed = facts.destroyed(case.event.time)
        if not destroyed:
            continue
        whole = destroyed.get(WHOLE_RECORD)
        for category in dict.fromkeys(case.event.data.categories):
            fact = whole or destroyed.get(category)
            if fact is not None:
                reasons.append(
                    f"{category} of pupils[{i}] was recorded destroyed at {fact.at.isoformat()}"
                )
    return reasons


def channel_not_permitted(case: Case) -> list[str]:
    if case.permission is None:
        return []
    channel = case.event.data.channel
    reasons = []
    if channel not in case.permission.channels:
        reasons.append(
            f"channel {channel.value!r} is not allowed for {case.event.data.recipient} in "
            f"{_a(case.kind)} (allowed: {_names(case.permission.channels)})"
        )
    if case.special and channel in case.policy.plain_channels:
        reasons.append(
            f"plain {channel.value} is never used for special category {_names(case.special)}"
        )
    return reasons


def _kept_past(category: str, place: int, start: date, retention: Retention) -> str:
    """Why a pupil's record is past its retention. Counted from birth, the reason gives
    no date: the end of the period would tell anyone reading it the date of birth, and
    a reason is hashed into the ledger, where it can never be erased."""
    if retention.counted_from == "dob":
        return f"{category} of pupils[{place}] was kept past {retention.describe()} from birth"
    return (
        f"{category} of pupils[{place}] was kept past {retention.describe()} from leaving "
        f"(until {_end(start, retention)})"
    )


def _end(start: date, retention: Retention) -> date:
    return add_period(start, retention.years, retention.months, retention.days)


#: Rules that can only be violated by a transfer.
TRANSFER_RULES = frozenset(
    {
        RuleId.TRANSFER_NO_DESTINATION,
        RuleId.TRANSFER_WRONG_DESTINATION,
        RuleId.TRANSFER_LATE,
    }
)

#: Every policy rule, keyed by its contract id. ``decide`` runs them all on each case.
POLICY_RULES: dict[RuleId, Rule] = {
    RuleId.RECIPIENT_UNKNOWN: recipient_unknown,
    RuleId.RECIPIENT_NOT_PERMITTED: recipient_not_permitted,
    RuleId.CATEGORY_UNKNOWN: category_unknown,
    RuleId.CATEGORY_NOT_PERMITTED: category_not_permitted,
    RuleId.BASIS_NOT_PERMITTED: basis_not_permitted,
    RuleId.SPECIAL_NO_CONDITION: special_no_condition,
    RuleId.CONSENT_MISSING: consent_missing,
    RuleId.CONSENT_WITHDRAWN: consent_withdrawn,
    RuleId.TRANSFER_NO_DESTINATION: transfer_no_destination,
    RuleId.TRANSFER_WRONG_DESTINATION: transfer_wrong_destination,
    RuleId.TRANSFER_LATE: transfer_late,
    RuleId.RETENTION_EXPIRED: retention_expired,
    RuleId.RECORD_DESTROYED: record_destroyed,
    RuleId.CHANNEL_NOT_PERMITTED: channel_not_permitted,
}


#: The rules worth running for each sharing kind (the others cannot be violated by it).
RULES_FOR_KIND: dict[str, tuple[tuple[RuleId, Rule], ...]] = {
    kind: tuple(
        (rule_id, rule)
        for rule_id, rule in POLICY_RULES.items()
        if kind == "transfer" or rule_id not in TRANSFER_RULES
    )
    for kind in ("census", "transfer", "referral")
}
