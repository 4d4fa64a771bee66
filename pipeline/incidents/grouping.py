"""From alerts to incidents: alerts with the same cause are one incident.

A cause is the rule that made the decision what it is, the recipient, the day (UK time)
the alert was recorded and the school that shared: ten referrals sent to the wrong agency
on one afternoon are one incident for the DPO to work, not ten; two schools of a trust
making the same mistake on the same day are two, each its own school's to answer for.

The grouping itself is the incidents projection's fold
(:mod:`pipeline.ledger.storage.incident_projection`), the one the ledger keeps its rows by; this
module turns its rows into the desk's :class:`Incident`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from pipeline.incidents.lifecycle import Action, Cause, Incident
from pipeline.ledger.storage.incident_projection import Kept, alert_cause, folded
from pipeline.ledger.storage.store import from_utc_text
from schemas.alerts import Severity


def cause_of(alert: Mapping[str, Any]) -> Cause:
    """The alert's cause (:func:`pipeline.ledger.storage.incident_projection.alert_cause`)."""
    return Cause(*alert_cause(alert))


def incident_of(
    kept: Kept, alerts: Sequence[tuple[int, str | None]], history: Sequence[Action] = ()
) -> Incident:
    """The incident a kept row, its alerts (seq, event id) and its actions make."""
    return Incident(
        Cause(kept.rule, kept.recipient, date.fromisoformat(kept.day), kept.school),
        Severity(kept.severity),
        from_utc_text(kept.detected_at),
        kept.breach,
        tuple(seq for seq, _ in alerts),
        tuple(history),
        frozenset(event for _, event in alerts if event),
    )


def incidents_from(alerts: Iterable[Mapping[str, Any]]) -> list[Incident]:
    """One incident per cause, in the order their first alerts were recorded. Its
    severity is its worst alert's; its clock starts at its first alert."""
    by_id, filed = folded(sorted(((a["seq"], a) for a in alerts), key=lambda pair: pair[0]))
    members: dict[int, list[tuple[int, str | None]]] = {number: [] for number in by_id}
    for filing in filed:
        members[filing["incident"]].append((filing["seq"], filing["event_id"]))
    return [incident_of(by_id[number], members[number]) for number in sorted(by_id)]
