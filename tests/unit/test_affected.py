"""Who an incident concerned, for the families to be told (Art 34), and how the queue is
narrowed: pure, on entries and incidents made here."""

from __future__ import annotations

from pipeline.incidents.affected import (
    ERASED,
    FAMILIES_COLUMNS,
    affected_pupils,
    families_rows,
    places_concerned,
)
from pipeline.ledger.records.entry import Entry

RULE = "consent.missing"
REFERRAL = "uk.school.pupil.referred.v1"


def decided(
    seq: int,
    keys: tuple[str, ...],
    reason: str,
    *,
    event_id: str = "ev-1",
    kind: str = "decision",
    occurred_at: str = "2026-07-21T08:30:00.000000Z",
    rule: str = RULE,
) -> Entry:
    return Entry(
        seq,
        kind,
        event_id=event_id,
        event_type=REFERRAL,
        occurred_at=occurred_at,
        recorded_at="2026-07-21T08:31:00.000000Z",
        school="116234",
        recipient="agency:school-nursing",
        pupil_keys=keys,
        decision="breach",
        rules=(rule,),
        reasons=(reason,),
    )


def test_a_reason_naming_places_concerns_only_the_pupils_at_them() -> None:
    """A census with two pupils' consent missing concerns those two families, not all."""
    entry = decided(
        1, ("k0", "k1", "k2", "k3"), "no consent 'C' for pupils[1]; no consent 'C' for pupils[3]"
    )
    assert places_concerned(entry, RULE) == {1, 3}
    assert [p.pupil_key for p in affected_pupils([entry], RULE, {})] == ["k1", "k3"]


def test_a_reason_that_names_no_place_concerns_every_pupil_of_the_event() -> None:
    entry = decided(1, ("k0", "k1"), "plain email is never used for special category medical")
    assert places_concerned(entry, RULE) is None
    assert [p.pupil_key for p in affected_pupils([entry], RULE, {})] == ["k0", "k1"]


def test_a_reason_naming_a_place_in_one_part_only_concerns_every_pupil() -> None:
    entry = decided(1, ("k0", "k1"), "no consent 'C' for pupils[1]; recipient not permitted")
    assert places_concerned(entry, RULE) is None


def test_an_event_judged_again_counts_once_for_its_pupil() -> None:
    """A late fact re-decides an event and it is alerted on again: one event, not two."""
    missing = "no consent 'C' for pupils[0]"
    first = decided(1, ("k0",), missing, event_id="ev-1")
    again = decided(5, ("k0",), missing, event_id="ev-1", kind="reevaluation")
    other = decided(7, ("k0",), missing, event_id="ev-2")
    (pupil,) = affected_pupils([other, again, first], RULE, {})
    assert [e.event_id for e in pupil.events] == ["ev-1", "ev-2"]


def test_each_pupil_is_named_by_the_identity_rows_upn_and_date_of_birth() -> None:
    entry = decided(1, ("k0", "k1"), "no consent 'C' for pupils[0]; no consent 'C' for pupils[1]")
    found = affected_pupils([entry], RULE, {"k0": ("A850123426001", "2014-03-09")})
    assert [(p.upn, p.dob, p.schools) for p in found] == [
        ("A850123426001", "2014-03-09", ("116234",)),
        (None, None, ("116234",)),  # erased: the pseudonym is all that is left
    ]


def test_the_families_list_has_a_row_per_pupil_with_each_event_on_its_uk_day() -> None:
    """An event at 23:30 UTC on 20 July happened on 21 July in an English school (BST)."""
    late = decided(1, ("k0",), "no consent 'C' for pupils[0]", occurred_at="2026-07-20T23:30:00Z")
    found = affected_pupils([late], RULE, {"k0": ("A850123426001", "2014-03-09")})
    rows = list(families_rows(42, found, lambda t: "referral" if t == REFERRAL else "?"))
    assert FAMILIES_COLUMNS == ("upn", "date_of_birth", "school_urn", "incident", "events")
    assert rows == [["A850123426001", "2014-03-09", "116234", "42", "referral, 21 Jul 2026"]]


def test_an_erased_pupil_is_listed_as_erased_in_the_families_list() -> None:
    entry = decided(1, ("k0",), "no consent 'C' for pupils[0]")
    (row,) = families_rows(1, affected_pupils([entry], RULE, {}), str)
    assert row[:2] == [ERASED, ""]
