"""From alerts to incidents: alerts with the same cause are one incident.

A cause is the rule that made the decision what it is, the recipient, the day (UK time)
the alert was recorded and the school that shared: ten referrals sent to the wrong agency
on one afternoon are one incident for the DPO to work, not ten; two schools of a trust
making the same mistake on the same day are two, each its own school's to answer for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from pipeline.incidents.lifecycle import SEVERITY_RANK, Cause, Incident
from pipeline.ledger.store import from_utc_text
from pipeline.schooltime import school_day
from schemas.alerts import (
    MERGE_DELAY_MISSED,
    MERGE_DELAY_MISSED_CAUSE,
    RETENTION_DUE,
    RETENTION_DUE_CAUSE,
    WITNESS_REFUSAL,
    WITNESS_REFUSED_CAUSE,
    Severity,
)
from schemas.decisions import RULE_VERDICT, RuleId, Verdict

#: The causes of the log's own alerts, which break no rule of the contract, by their kind.
LOG_CAUSES = {WITNESS_REFUSAL: WITNESS_REFUSED_CAUSE, MERGE_DELAY_MISSED: MERGE_DELAY_MISSED_CAUSE}


def cause_of(alert: Mapping[str, Any]) -> Cause:
    """The alert's cause: its first rule with the alert's own verdict (the rule that made
    it a breach, not a lesser one broken alongside), recipient, and UK day. The log's
    own alerts (a witness refusing it, a merge delay missed), which break no rule of the
    contract, have a cause of their own for each kind; a school's records falling due
    have one a school and week (the week's Monday its day)."""
    day = school_day(from_utc_text(alert["recorded_at"]))
    if alert.get("kind") == RETENTION_DUE:
        # One incident a school and week, whatever the day it was raised.
        monday = day - timedelta(days=day.weekday())
        return Cause(RETENTION_DUE_CAUSE, None, monday, alert.get("school"))
    own = LOG_CAUSES.get(alert.get("kind", ""))
    if own is not None:
        return Cause(own, None, day)
    verdict = Verdict(alert["decision"])
    rules = [RuleId(r) for r in alert["rules"]]
    decisive = next((r for r in rules if RULE_VERDICT[r] is verdict), rules[0])
    return Cause(decisive.value, alert.get("recipient"), day, alert.get("school"))


def incidents_from(alerts: Iterable[Mapping[str, Any]]) -> list[Incident]:
    """One incident per cause, in the order their first alerts were recorded. Its
    severity is its worst alert's; its clock starts at its first alert."""
    grouped: dict[Cause, Incident] = {}
    for alert in sorted(alerts, key=lambda a: a["seq"]):
        cause = cause_of(alert)
        severity = Severity(alert["severity"])
        breach = alert["decision"] == Verdict.BREACH.value
        known = grouped.get(cause)
        event = frozenset({alert["event_id"]} if alert.get("event_id") else ())
        if known is None:
            grouped[cause] = Incident(
                cause,
                severity,
                from_utc_text(alert["recorded_at"]),
                breach,
                (alert["seq"],),
                events=event,
            )
            continue
        worse = max(severity, known.severity, key=SEVERITY_RANK.__getitem__)
        grouped[cause] = Incident(
            cause,
            worse,
            known.detected_at,
            known.breach or breach,
            (*known.entries, alert["seq"]),
            known.history,
            known.events | event,
        )
    return list(grouped.values())
