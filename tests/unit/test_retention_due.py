"""Retention due, the pure computation: what a school must now destroy, given what it
holds, the register, dates of birth, its pack and a day."""

from __future__ import annotations

from datetime import date, datetime

from pipeline.packs import load_pack, pack_text
from pipeline.policy.pack import parse_pack
from pipeline.policy.retention import (
    Held,
    Limits,
    end_of_day,
    last_kept,
    ledger_keeps,
    limits,
    merged,
    periods,
    retention_due,
    still_kept,
)
from pipeline.register import Destruction, Leaving, Register
from pipeline.schooltime import at_school

PACK = load_pack()  # england-schools: default 1 year from leaving, attendance 6 years
# from the record, SEN 31 years from birth
SCHOOL, OTHER = "100001", "100002"


def _register(*facts: tuple[str, str, Leaving | Destruction]) -> Register:
    register = Register(pupil_key=lambda upn: upn)
    for school, pupil, fact in facts:
        register.add(school, pupil, fact)
    return register


def _left(on: date, school: str = SCHOOL, pupil: str = "p1") -> tuple[str, str, Leaving]:
    return school, pupil, Leaving(at_school(on, 15), f"left-{pupil}", on, "school:100002")


def _destroyed(
    at: datetime, categories: list[str], pupil: str = "p1"
) -> tuple[str, str, Destruction]:
    return SCHOOL, pupil, Destruction(at, f"gone-{pupil}", frozenset(categories))


def _due(
    held: list[Held], register: Register, as_of: date, dobs: dict[str, date | None] | None = None
) -> list[tuple[str, str, date]]:
    found = retention_due(held, register, dobs or {}, lambda _: PACK, as_of)
    return [(d.pupil, d.category, d.kept_until) for d in found]


def test_a_leaver_s_record_falls_due_the_day_after_a_year_from_leaving() -> None:
    held = [Held(SCHOOL, "p1", "personal", date(2020, 9, 1))]
    register = _register(_left(date(2025, 3, 14)))
    assert _due(held, register, date(2026, 3, 14)) == []
    assert _due(held, register, date(2026, 3, 15)) == [("p1", "personal", date(2026, 3, 14))]


def test_a_pupil_still_on_roll_is_never_due_for_what_counts_from_leaving() -> None:
    held = [Held(SCHOOL, "p1", "personal", date(2000, 9, 1))]
    assert _due(held, _register(), date(2090, 1, 1)) == []


def test_leaving_another_school_does_not_start_this_school_s_period() -> None:
    held = [Held(SCHOOL, "p1", "personal", date(2020, 9, 1))]
    register = _register(_left(date(2020, 3, 14), school=OTHER))
    assert _due(held, register, date(2030, 1, 1)) == []


def test_a_leaving_recorded_after_the_day_asked_about_is_not_yet_in_force() -> None:
    held = [Held(SCHOOL, "p1", "personal", date(2020, 9, 1))]
    register = _register(
        (SCHOOL, "p1", Leaving(at_school(date(2031, 1, 1), 9), "late", date(2020, 3, 1), "x"))
    )
    assert _due(held, register, date(2030, 1, 1)) == []
    assert _due(held, register, date(2031, 1, 1)) == [("p1", "personal", date(2021, 3, 1))]


def test_attendance_falls_due_six_years_from_the_oldest_record_declared() -> None:
    held = [
        Held(SCHOOL, "p1", "attendance", date(2024, 10, 2), date(2021, 10, 3)),
        Held(SCHOOL, "p1", "attendance", date(2025, 1, 15), date(2019, 9, 1)),
    ]
    assert _due(merged(held), _register(), date(2025, 9, 1)) == []
    assert _due(merged(held), _register(), date(2025, 9, 2)) == [
        ("p1", "attendance", date(2025, 9, 1))
    ]


def test_attendance_with_no_record_date_counts_from_its_first_sharing() -> None:
    held = [Held(SCHOOL, "p1", "attendance", date(2020, 5, 5))]
    assert _due(held, _register(), date(2026, 5, 6)) == [("p1", "attendance", date(2026, 5, 5))]
    assert _due(held, _register(), date(2026, 5, 5)) == []


def test_sen_falls_due_thirty_one_years_from_birth_and_never_without_a_date_of_birth() -> None:
    held = [
        Held(SCHOOL, "p1", "sen", date(2020, 5, 5)),
        Held(SCHOOL, "p2", "sen", date(2020, 5, 5)),
    ]
    dobs: dict[str, date | None] = {"p1": date(2010, 2, 3), "p2": None}
    assert _due(held, _register(), date(2041, 2, 3), dobs) == []
    assert _due(held, _register(), date(2041, 2, 4), dobs) == [("p1", "sen", date(2041, 2, 3))]


def test_a_destroyed_category_is_off_the_list_from_the_day_it_was_recorded() -> None:
    held = [
        Held(SCHOOL, "p1", "personal", date(2020, 9, 1)),
        Held(SCHOOL, "p1", "assessment", date(2020, 9, 1)),
    ]
    gone = at_school(date(2027, 5, 1), 16)
    register = _register(_left(date(2025, 3, 14)), _destroyed(gone, ["personal"]))
    assert _due(held, register, date(2027, 4, 30)) == [
        ("p1", "assessment", date(2026, 3, 14)),
        ("p1", "personal", date(2026, 3, 14)),
    ]
    assert _due(held, register, date(2027, 5, 1)) == [("p1", "assessment", date(2026, 3, 14))]


def test_destroying_the_whole_record_takes_every_category_off() -> None:
    held = [Held(SCHOOL, "p1", "personal", date(2020, 9, 1))]
    register = _register(
        _left(date(2020, 3, 14)), _destroyed(at_school(date(2022, 1, 1), 9), ["*"])
    )
    assert _due(held, register, date(2030, 1, 1)) == []


def test_the_day_asked_about_ends_at_midnight_school_time_not_utc() -> None:
    # 23:30 in British Summer Time is 22:30 UTC the same day: that day's fact.
    assert end_of_day(date(2026, 6, 1)).isoformat() == "2026-06-01T23:59:59.999999+01:00"


def test_only_leavers_the_long_born_and_old_records_can_be_due() -> None:
    """The ledger reads only these pupils' holdings, so the limits must hold every due
    item: born before the day 31 years back, or a record from before the day 6 years
    back, are the loosest starts the pack's periods allow."""
    within = limits([PACK], date(2030, 3, 15))
    assert within == Limits(frozenset({"attendance"}), date(1999, 3, 15), date(2024, 3, 15))
    held = [
        Held(SCHOOL, "p1", "sen", date(2020, 5, 5)),
        Held(SCHOOL, "p2", "attendance", date(2024, 3, 14)),
    ]
    dobs: dict[str, date | None] = {"p1": date(1999, 3, 14)}
    assert _due(held, _register(), date(2030, 3, 15), dobs) == [
        ("p1", "sen", date(2030, 3, 14)),
        ("p2", "attendance", date(2030, 3, 14)),
    ]


def _periods(held: list[Held], register: Register, as_of: date) -> list[tuple[str, str]]:
    found = still_kept(periods(held, register, {}, lambda _: PACK, as_of), as_of)
    return [(p.pupil, p.category) for p in found]


def test_a_period_still_running_keeps_the_pupil_s_data() -> None:
    held = [Held(SCHOOL, "p1", "personal", date(2020, 9, 1))]
    register = _register(_left(date(2025, 3, 14)))
    assert _periods(held, register, date(2026, 3, 14)) == [("p1", "personal")]
    assert _periods(held, register, date(2026, 3, 15)) == []


def test_a_pupil_still_on_roll_is_kept_for_a_period_that_cannot_end_yet() -> None:
    held = [Held(SCHOOL, "p1", "personal", date(2000, 9, 1))]
    assert _periods(held, _register(), date(2090, 1, 1)) == [("p1", "personal")]


def test_a_record_destroyed_early_no_longer_keeps_the_pupil_s_data() -> None:
    held = [Held(SCHOOL, "p1", "personal", date(2020, 9, 1))]
    register = _register(_destroyed(at_school(date(2024, 5, 1), 10), ["*"]))
    assert _periods(held, register, date(2024, 5, 2)) == []


def test_a_pupil_s_last_kept_day_is_the_latest_end_of_their_periods() -> None:
    held = [
        Held(SCHOOL, "p1", "personal", date(2020, 9, 1)),
        Held(SCHOOL, "p1", "attendance", date(2020, 9, 1), date(2020, 9, 1)),
        Held(SCHOOL, "p2", "personal", date(2020, 9, 1)),
    ]
    register = _register(_left(date(2021, 7, 20)))
    found = periods(merged(held), register, {}, lambda _: PACK, date(2030, 1, 1))
    assert last_kept(found) == {"p1": date(2026, 9, 1), "p2": None}


#: A pack keeping the ledger's record of a pupil a year, where the shipped one keeps six.
ONE_YEAR = parse_pack(
    pack_text()[0].replace("\ntransfers:", "\nledger_retention: {years: 1}\ntransfers:", 1), "x"
)


def _kept_by_ledger(held: list[Held], register: Register) -> dict[str, date | None]:
    found = periods(merged(held), register, {}, lambda _: PACK, date(2030, 1, 1))
    return ledger_keeps(found, lambda school: ONE_YEAR if school == OTHER else PACK)


def test_the_ledger_keeps_a_pupil_its_own_period_after_their_last_kept_day() -> None:
    held = [Held(SCHOOL, "p1", "personal", date(2020, 9, 1))]
    register = _register(_left(date(2021, 7, 20)))
    assert _kept_by_ledger(held, register) == {"p1": date(2028, 7, 20)}  # 2022 + 6 years


def test_a_pupil_two_schools_hold_is_kept_until_the_later_lets_go() -> None:
    """OTHER's pack keeps the ledger's record a year, SCHOOL's six: SCHOOL decides."""
    held = [
        Held(SCHOOL, "p1", "personal", date(2020, 9, 1)),
        Held(OTHER, "p1", "personal", date(2020, 9, 1)),
    ]
    register = _register(_left(date(2021, 7, 20)), _left(date(2023, 7, 20), OTHER))
    assert _kept_by_ledger(held, register) == {"p1": date(2028, 7, 20)}


def test_a_pupil_one_school_still_has_on_roll_is_kept_whatever_the_other_says() -> None:
    held = [
        Held(SCHOOL, "p1", "personal", date(2020, 9, 1)),
        Held(OTHER, "p1", "personal", date(2020, 9, 1)),
    ]
    register = _register(_left(date(2021, 7, 20), OTHER))
    assert _kept_by_ledger(held, register) == {"p1": None}
