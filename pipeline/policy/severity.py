"""How serious a decision is, for alerts and incidents (the pack's ``severity`` section)."""

from __future__ import annotations

from collections.abc import Collection

from pipeline.policy.pack import Policy
from schemas.alerts import Severity
from schemas.decisions import Verdict


def severity_of(
    verdict: Verdict, categories: Collection[str], pupil_count: int, policy: Policy
) -> Severity | None:
    """High for a breach sharing a special category or many pupils at once, medium for any
    other breach, low for a review; None when the decision raises no alert."""
    if verdict is Verdict.BREACH:
        if pupil_count >= policy.high_pupil_count or any(c in policy.special for c in categories):
            return Severity.HIGH
        return Severity.MEDIUM
    if verdict is Verdict.REVIEW:
        return Severity.LOW
    return None
