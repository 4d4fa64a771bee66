"""Breach severity, as the england-schools pack sets it."""

from __future__ import annotations

from pipeline.policy.pack import Policy
from pipeline.policy.severity import severity_of
from schemas.alerts import Severity
from schemas.decisions import Verdict


def test_a_breach_sharing_a_special_category_is_high(policy: Policy) -> None:
    assert severity_of(Verdict.BREACH, ["personal", "medical"], 1, policy) is Severity.HIGH


def test_a_breach_of_ten_pupils_at_once_is_high(policy: Policy) -> None:
    assert policy.high_pupil_count == 10
    assert severity_of(Verdict.BREACH, ["personal"], 10, policy) is Severity.HIGH


def test_a_breach_of_nine_pupils_without_special_data_is_medium(policy: Policy) -> None:
    assert severity_of(Verdict.BREACH, ["personal"], 9, policy) is Severity.MEDIUM


def test_a_review_is_low(policy: Policy) -> None:
    assert severity_of(Verdict.REVIEW, ["medical"], 30, policy) is Severity.LOW


def test_allowed_and_rejected_raise_no_alert(policy: Policy) -> None:
    assert severity_of(Verdict.ALLOWED, ["medical"], 30, policy) is None
    assert severity_of(Verdict.REJECTED, ["medical"], 30, policy) is None
