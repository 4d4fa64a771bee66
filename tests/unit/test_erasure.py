"""What an erasure entry records, and the reasons it refuses: the entry is hashed for
ever, so it must never hold what the erasure removes."""

from __future__ import annotations

import pytest

from pipeline.ledger.privacy.erasure import MOST_REASON, ErasureRefused, erasure_details


def test_an_erasure_records_who_why_the_rule_and_how_many_entries() -> None:
    details = erasure_details("dpo", "  parent's request,\n  no duty holds the data ", "request", 7)
    assert details == {
        "by": "dpo",
        "reason": "parent's request, no duty holds the data",
        "rule": "request",
        "entries": 7,
    }


@pytest.mark.parametrize("upn", ["A123456789012", "a12345678901b", "A 1234 5678 9012"])
def test_a_reason_holding_anything_shaped_like_a_upn_is_refused(upn: str) -> None:
    with pytest.raises(ErasureRefused, match="shaped like a UPN") as refused:
        erasure_details("dpo", f"request for {upn} from the parent", "request", 1)
    assert upn not in str(refused.value)


@pytest.mark.parametrize("date", ["2014-03-09", "09/03/2014", "9.3.14"])
def test_a_reason_holding_a_date_is_refused(date: str) -> None:
    with pytest.raises(ErasureRefused, match="holds a date") as refused:
        erasure_details("dpo", f"pupil born {date}", "request", 1)
    assert date not in str(refused.value)


def test_a_reason_naming_a_year_or_a_number_of_entries_is_kept() -> None:
    said = "left in 2019, six years kept; 12 entries"
    assert erasure_details("dpo", said, "retention", 12)["reason"] == said


def test_an_unknown_rule_is_refused_naming_the_rules() -> None:
    with pytest.raises(ErasureRefused, match="give one of request, retention"):
        erasure_details("dpo", "asked", "whim", 1)


def test_an_empty_reason_or_no_one_erasing_is_refused() -> None:
    with pytest.raises(ErasureRefused, match="say why"):
        erasure_details("dpo", " \n ", "request", 1)
    with pytest.raises(ErasureRefused, match="say who"):
        erasure_details(" ", "asked", "request", 1)


def test_a_reason_longer_than_a_sentence_or_two_is_refused() -> None:
    with pytest.raises(ErasureRefused, match=f"at most {MOST_REASON} characters"):
        erasure_details("dpo", "x" * (MOST_REASON + 1), "request", 1)
