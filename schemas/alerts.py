"""The alert: what goes out on ``sharing.alerts`` for every breach and review decision,
and when a witness refuses the log's history.

It names pupils only by pseudonym (never a UPN, name or date of birth), so it may travel
beyond the school: to a SIEM, a ticketing system, the DPO's phone.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.decisions import RuleId, Verdict

#: The most bytes one alert may take as JSON: below the broker's default 1 MB a record,
#: with room for the headers. An alert is built to fit (:func:`summary_of`); one that
#: does not is set aside by the relay rather than holding back every alert after it.
MAX_ALERT_BYTES = 900_000
#: The ``kind`` of the alert raised when a witness refuses a checkpoint of the log: its
#: history was rewritten or forked, an unauthorised alteration of the records that is the
#: DPO's to assess as a breach (high severity, no rules: its reason names the witness).
WITNESS_REFUSAL = "witness_refusal"
#: The incident cause under which witness refusals are grouped.
WITNESS_REFUSED_CAUSE = "log.witness_refused"
#: The ``kind`` of the alert raised when the log misses its maximum merge delay: entries it
#: gave receipts for are in no checkpoint it signed within the delay it promises. The log
#: failed its own promise (high severity, no rules, no pupils); whether anything was lost
#: is the DPO's to assess, so it is a review, not a breach.
MERGE_DELAY_MISSED = "merge_delay_missed"
#: The incident cause under which missed merge delays are grouped.
MERGE_DELAY_MISSED_CAUSE = "log.merge_delay_missed"
#: The ``kind`` of the alert raised, once a school and week, when a school holds pupils'
#: records past their retention period and not recorded destroyed (``retention due``):
#: low severity, a review, no rules and no pupils (one alert for the school, never one a
#: pupil); its reason says how many records of how many pupils.
RETENTION_DUE = "retention_due"
#: The incident cause under which a school's retention-due alerts of a week are grouped.
RETENTION_DUE_CAUSE = "retention.due"
#: The most parts (about one pupil each) a reason keeps in an alert; the ledger keeps all.
MAX_REASON_PARTS = 10


def summary_of(reason: str) -> str:
    """``reason`` with at most :data:`MAX_REASON_PARTS` of its ``; ``-separated parts and a
    count of the rest: a census of thousands of pupils gives one reason per pupil, which
    the DPO needs counted in an alert and listed only in the ledger."""
    parts = reason.split("; ")
    if len(parts) <= MAX_REASON_PARTS:
        return reason
    more = len(parts) - MAX_REASON_PARTS
    return "; ".join(parts[:MAX_REASON_PARTS]) + f"; and {more:,} more like them"


class Severity(StrEnum):
    """How urgent an alert is, as the policy pack sets it."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


#: How grave each severity is, the gravest highest: an incident is as grave as its worst alert.
SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2}


class Alert(BaseModel):
    """One breach or review decision, pseudonymous. ``seq`` is its ledger entry: a
    consumer that sees the same ``seq`` twice (delivery is at-least-once) has one alert."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(description="the ledger entry that raised the alert")
    kind: str = Field(
        description="'decision', 'reevaluation' after a late fact, 'witness_refusal' when "
        "a witness refused the log's checkpoint (its history was rewritten or forked: no "
        "event, no pupils, no rules; the reason names the witness and what it said), or "
        "'merge_delay_missed' when entries the log gave receipts for were in no checkpoint "
        "it signed within its maximum merge delay (no event, no pupils, no rules; the "
        "reason says since when and how many), or 'retention_due' once a school and week "
        "when the school holds pupils' records past their retention period (no event, no "
        "pupils, no rules; the school, and the reason says how many records of how many "
        "pupils)"
    )
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


#: The fields an alert takes from its ledger entry.
ALERT_FIELDS = tuple(name for name in Alert.model_fields if name not in ("seq", "severity"))
