"""The alert: what goes out on ``sharing.alerts`` for every breach and review decision.

It names pupils only by pseudonym (never a UPN, name or date of birth), so it may travel
beyond the school: to a SIEM, a ticketing system, the DPO's phone.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.decisions import RuleId, Verdict


class Severity(StrEnum):
    """How urgent an alert is, as the policy pack sets it."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Alert(BaseModel):
    """One breach or review decision, pseudonymous. ``seq`` is its ledger entry: a
    consumer that sees the same ``seq`` twice (delivery is at-least-once) has one alert."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(description="the ledger entry that raised the alert")
    kind: str = Field(description="'decision', or 'reevaluation' after a late fact")
    refers_to: int | None = Field(description="for a re-evaluation, the entry re-decided")
    event_id: str | None
    event_type: str | None
    school: str | None = Field(description="URN of the school that shared")
    recipient: str | None
    decision: Verdict
    severity: Severity
    rules: list[RuleId]
    reasons: list[str]
    categories: list[str]
    pupil_keys: list[str] = Field(description="pupil pseudonyms (HMAC-SHA256 of the UPN)")
    occurred_at: str | None
    recorded_at: str
    policy_version: str | None
