"""Calendar periods and school-day counting."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pipeline.policy.calendar import add_period, earliest_unexpired, school_days_between


def test_a_year_from_the_first_of_march_ends_on_the_first_of_march() -> None:
    assert add_period(date(2023, 3, 1), years=1) == date(2024, 3, 1)


def test_a_year_from_a_leap_day_ends_on_the_last_day_of_february() -> None:
    assert add_period(date(2024, 2, 29), years=1) == date(2025, 2, 28)


def test_months_clamp_to_the_end_of_a_shorter_month() -> None:
    assert add_period(date(2026, 1, 31), months=1) == date(2026, 2, 28)


def test_no_school_days_when_the_end_is_not_after_the_start() -> None:
    assert school_days_between(date(2026, 7, 1), date(2026, 7, 1)) == 0
    assert school_days_between(date(2026, 7, 1), date(2026, 6, 1)) == 0


def test_a_closure_on_a_weekday_removes_one_school_day() -> None:
    start, end = date(2026, 7, 1), date(2026, 7, 22)
    assert school_days_between(start, end, (date(2026, 7, 6),)) == 14


def test_a_closure_at_a_weekend_or_outside_the_range_changes_nothing() -> None:
    start, end = date(2026, 7, 1), date(2026, 7, 22)
    closures = (date(2026, 7, 1), date(2026, 7, 4), date(2026, 7, 23))
    assert school_days_between(start, end, closures) == 15


@given(st.dates(date(2000, 1, 1), date(2100, 1, 1)), st.integers(0, 400))
def test_school_days_equal_a_day_by_day_count(start: date, length: int) -> None:
    end = start + timedelta(days=length)
    by_hand = sum(1 for i in range(1, length + 1) if (start + timedelta(days=i)).weekday() < 5)
    assert school_days_between(start, end) == by_hand


@given(
    st.dates(date(1990, 1, 1), date(2100, 1, 1)),
    st.dates(date(1990, 1, 1), date(2100, 1, 1)),
    st.integers(0, 40),
    st.integers(0, 14),
    st.integers(0, 40),
)
def test_a_start_is_expired_exactly_when_before_the_earliest_unexpired(
    start: date, day: date, years: int, months: int, days: int
) -> None:
    expired = add_period(start, years, months, days) < day
    assert expired == (start < earliest_unexpired(day, years, months, days))
