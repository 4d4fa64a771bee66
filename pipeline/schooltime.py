"""The one clock a school keeps: Europe/London, with British Summer Time as the law has
it. Days on the ICO clock, dates typed into a search, deadlines shown to a DPO and the
simulated school day all read it here."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

SCHOOL_TIME = ZoneInfo("Europe/London")


def school_day(moment: datetime) -> date:
    """The day ``moment`` falls on in the school's time zone."""
    return moment.astimezone(SCHOOL_TIME).date()


def at_school(day: date, hour: int, minute: int = 0) -> datetime:
    """The instant the school's clocks show ``hour:minute`` on ``day``."""
    return datetime.combine(day, time(hour, minute), SCHOOL_TIME)


def school_year(day: date) -> tuple[date, date]:
    """The English school year ``day`` falls in: from 1 September to the next."""
    start = date(day.year if day.month >= 9 else day.year - 1, 9, 1)
    return start, date(start.year + 1, 9, 1)


def shown_in_school_time(moment: datetime) -> str:
    """``Mon 26 Oct 2026, 09:00 GMT``: how a deadline is shown to a DPO."""
    local = moment.astimezone(SCHOOL_TIME)
    return local.strftime("%a %d %b %Y, %H:%M ") + (local.tzname() or "")


def shown_day(day: date, weekday: bool = False) -> str:
    """``1 Sep 2026``: a day as a school writes it, with no month-first reading possible
    (a period's ends, a date of birth); ``Thu 1 Sep 2026`` with the ``weekday``, beside
    times."""
    text = f"{day.day} {day:%b %Y}"
    return f"{day:%a} {text}" if weekday else text
