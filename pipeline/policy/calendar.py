"""Date arithmetic the rules need: calendar periods and school days."""

from __future__ import annotations

import calendar
from bisect import bisect_right
from collections.abc import Sequence
from datetime import date, timedelta
from functools import lru_cache


@lru_cache(maxsize=65_536)
def add_period(start: date, years: int = 0, months: int = 0, days: int = 0) -> date:
    """``start`` plus a calendar period; a day past the month's end clamps to its last day.

    A year from 2023-03-01 is 2024-03-01; a year from 2024-02-29 is 2025-02-28. Cached:
    a retention check adds the same few periods to the same leaving and record days for
    tens of thousands of holdings.
    """
    total = start.month - 1 + months + 12 * years
    year, month = start.year + total // 12, total % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date(year, month, day) + timedelta(days=days)


def _weekdays_through(ordinal: int) -> int:
    # date.fromordinal(1) is a Monday, so each block of 7 ordinals starts on a Monday.
    weeks, rest = divmod(ordinal, 7)
    return 5 * weeks + min(rest, 5)


def school_days_between(after: date, through: date, closures: Sequence[date] = ()) -> int:
    """School days (Monday to Friday, less ``closures``) after ``after`` up to ``through``.

    ``closures`` must be sorted. Zero when ``through`` is not after ``after``.
    """
    if through <= after:
        return 0
    count = _weekdays_through(through.toordinal()) - _weekdays_through(after.toordinal())
    lo, hi = bisect_right(closures, after), bisect_right(closures, through)
    return count - sum(1 for d in closures[lo:hi] if d.weekday() < 5)


@lru_cache(maxsize=65_536)
def earliest_unexpired(day: date, years: int = 0, months: int = 0, days: int = 0) -> date:
    """The earliest start whose period has not ended before ``day``.

    ``add_period`` never decreases as its start grows, so a record is past its period on
    ``day`` exactly when its start is before this date: one comparison per pupil instead
    of a calendar sum.
    """
    back = -(years * 12 + months)
    year, month = divmod(day.month - 1 + back, 12)
    guess = date(
        day.year + year, month + 1, min(day.day, calendar.monthrange(day.year + year, month + 1)[1])
    )
    guess -= timedelta(days=days)
    one = timedelta(days=1)
    while add_period(guess, years, months, days) < day:
        guess += one
    while add_period(guess - one, years, months, days) >= day:
        guess -= one
    return guess
