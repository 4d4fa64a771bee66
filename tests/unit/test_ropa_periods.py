"""The record of processing's period as a school reads it (pipeline.reports.ropa): the
days of a school year rather than UTC instants, the year it opens on, and an empty
period saying so and when the ledger's sharing ran."""

from __future__ import annotations

from datetime import date

from pipeline.ledger.reading.asking import instant
from pipeline.policy.pack import Policy
from pipeline.reports.formats import ropa_html
from pipeline.reports.ropa import Span, build_ropa, nothing_recorded, opening_year, period_words

#: A ledger whose sharing all happened in the school year 2025-26.
YEAR_2025_26 = Span("2025-09-03T09:00:00.000000Z", "2026-07-18T14:00:00.000000Z")


def period(since: str | None, until: str | None) -> dict[str, str | None]:
    return period_words(
        instant(since, "From") if since else None, instant(until, "Before") if until else None
    )


def test_a_school_year_is_shown_as_its_first_and_last_days() -> None:
    # midnight in England is 23:00 UTC the day before in summer time: shown as the day
    assert period("2025-09-01", "2026-09-01") == {
        "from": "1 Sep 2025",
        "to": "31 Aug 2026",
        "phrase": "between 1 Sep 2025 and 31 Aug 2026",
    }


def test_a_period_in_winter_is_shown_by_its_days_too() -> None:
    assert period("2026-01-01", "2026-02-01")["phrase"] == "between 1 Jan 2026 and 31 Jan 2026"


def test_a_period_open_at_one_end_says_so() -> None:
    assert period("2025-09-01", None)["phrase"] == "from 1 Sep 2025"
    assert period(None, "2026-09-01")["phrase"] == "up to 31 Aug 2026"
    assert period(None, None)["phrase"] == ""


def test_a_period_ending_at_a_time_of_day_shows_its_last_minute() -> None:
    assert period("2026-07-01", "2026-07-21T09:30:00+01:00")["to"] == "Tue 21 Jul 2026, 09:29 BST"


def test_the_record_opens_on_the_latest_school_year_that_has_sharing() -> None:
    today = date(2026, 12, 6)  # in 2026-27, which has none yet
    assert opening_year(YEAR_2025_26, today) == (date(2025, 9, 1), date(2026, 9, 1))


def test_a_ledger_with_no_sharing_opens_the_record_on_this_school_year() -> None:
    assert opening_year(None, date(2026, 12, 6)) == (date(2026, 9, 1), date(2027, 9, 1))


def test_an_empty_period_says_so_and_when_the_ledgers_sharing_ran() -> None:
    assert nothing_recorded(period("2026-09-01", "2027-09-01"), YEAR_2025_26) == (
        "No sharing recorded between 1 Sep 2026 and 31 Aug 2027; "
        "the ledger's sharing events run from 3 Sep 2025 to 18 Jul 2026."
    )


def test_an_empty_ledger_says_it_holds_no_sharing_yet() -> None:
    assert nothing_recorded(period(None, None), None) == (
        "No sharing recorded: the ledger holds no sharing events yet."
    )


def test_the_printed_record_shows_its_period_in_days_and_why_it_is_empty(
    policy: Policy,
) -> None:
    since, until = instant("2026-09-01", "From"), instant("2027-09-01", "Before")
    report = build_ropa([], policy, since, until)
    report |= {
        "schools": None,
        "as_of": 0,
        "generated_at": "2026-12-06T10:00:00.000000Z",
        "nothing_recorded": nothing_recorded(report["period"], YEAR_2025_26),
    }
    page = ropa_html(report)
    assert '<dd id="ropa-period">1 Sep 2026 to 31 Aug 2027</dd>' in page
    assert "No sharing recorded between 1 Sep 2026 and 31 Aug 2027;" in page
    assert since not in page and '<table id="ropa">' not in page
