"""Decisions and the rule catalogue of contract v1.

A decision is the worst verdict over the rules an event violates; the order
``rejected > breach > review > allowed`` is part of the contract, so it lives here beside
the rule ids rather than in the engine.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Verdict(StrEnum):
    ALLOWED = "allowed"
    REVIEW = "review"
    BREACH = "breach"
    REJECTED = "rejected"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Verdict.ALLOWED: 0, Verdict.REVIEW: 1, Verdict.BREACH: 2, Verdict.REJECTED: 3}


class RuleId(StrEnum):
    EVENT_INVALID = "event.invalid"
    EVENT_ID_REUSED = "event.id_reused"
    PUPIL_INVALID_UPN = "pupil.invalid_upn"
    RECIPIENT_UNKNOWN = "recipient.unknown"
    RECIPIENT_NOT_PERMITTED = "recipient.not_permitted"
    CATEGORY_UNKNOWN = "category.unknown"
    CATEGORY_NOT_PERMITTED = "category.not_permitted"
    BASIS_NOT_PERMITTED = "basis.not_permitted"
    SPECIAL_NO_CONDITION = "special.no_condition"
    CONSENT_MISSING = "consent.missing"
    CONSENT_WITHDRAWN = "consent.withdrawn"
    TRANSFER_NO_DESTINATION = "transfer.no_destination"
    TRANSFER_WRONG_DESTINATION = "transfer.wrong_destination"
    TRANSFER_LATE = "transfer.late"
    RETENTION_EXPIRED = "retention.expired"
    RECORD_DESTROYED = "record.destroyed"
    CHANNEL_NOT_PERMITTED = "channel.not_permitted"


#: The verdict each rule gives when violated, as the contract's catalogue sets it.
RULE_VERDICT: dict[RuleId, Verdict] = {
    RuleId.EVENT_INVALID: Verdict.REJECTED,
    RuleId.EVENT_ID_REUSED: Verdict.REJECTED,
    RuleId.PUPIL_INVALID_UPN: Verdict.REJECTED,
    RuleId.RECIPIENT_UNKNOWN: Verdict.REVIEW,
    RuleId.RECIPIENT_NOT_PERMITTED: Verdict.BREACH,
    RuleId.CATEGORY_UNKNOWN: Verdict.REVIEW,
    RuleId.CATEGORY_NOT_PERMITTED: Verdict.BREACH,
    RuleId.BASIS_NOT_PERMITTED: Verdict.BREACH,
    RuleId.SPECIAL_NO_CONDITION: Verdict.BREACH,
    RuleId.CONSENT_MISSING: Verdict.BREACH,
    RuleId.CONSENT_WITHDRAWN: Verdict.BREACH,
    RuleId.TRANSFER_NO_DESTINATION: Verdict.REVIEW,
    RuleId.TRANSFER_WRONG_DESTINATION: Verdict.BREACH,
    RuleId.TRANSFER_LATE: Verdict.REVIEW,
    RuleId.RETENTION_EXPIRED: Verdict.BREACH,
    RuleId.RECORD_DESTROYED: Verdict.BREACH,
    RuleId.CHANNEL_NOT_PERMITTED: Verdict.BREACH,
}


class Decision(BaseModel):
    """One decision: the verdict, every violated rule once (sorted), and a reason for each.

    ``reasons[i]`` explains ``rules[i]``. Reasons name the offending value but never a
    pupil's identity: pupils are referred to by their position in ``data.pupils``.
    """

    model_config = ConfigDict(frozen=True)

    decision: Verdict
    rules: tuple[RuleId, ...] = Field(default=())
    reasons: tuple[str, ...] = Field(default=())

    @classmethod
    def from_violations(cls, violations: dict[RuleId, list[str]]) -> Decision:
        """The worst verdict over ``violations``, with rules sorted and one reason each."""
        if not violations:
            return ALLOWED
        rules = sorted(violations)
        verdict = max((RULE_VERDICT[r] for r in rules), key=_RANK.__getitem__)
        return cls.model_construct(
            decision=verdict,
            rules=tuple(rules),
            reasons=tuple("; ".join(violations[r]) for r in rules),
        )

    @classmethod
    def rejected(cls, rule: RuleId, reason: str) -> Decision:
        return cls.model_construct(decision=Verdict.REJECTED, rules=(rule,), reasons=(reason,))


ALLOWED = Decision(decision=Verdict.ALLOWED)
