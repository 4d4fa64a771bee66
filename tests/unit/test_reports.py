"""The pure parts of the auditors' reports: what a subject-access report keeps of an
entry naming many pupils, the record of processing's comparison with the policy, which
reads covered an entry, and how typed filters are read."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.ledger.reading.asking import BadFilter, filters_from, instant
from pipeline.ledger.reading.reads import ShownEntries
from pipeline.ledger.records.entry import Entry
from pipeline.policy.pack import Policy
from pipeline.reports.formats import cell
from pipeline.reports.ropa import build_ropa
from pipeline.reports.sar import Identity, build_sar, reasons_for, verdict_of


def entry(seq: int, **fields: Any) -> Entry:
    base: dict[str, Any] = {
        "seq": seq,
        "kind": "decision",
        "event_id": f"e{seq}",
        "event_type": "uk.school.census.submitted.v1",
        "occurred_at": "2026-01-15T10:00:00Z",
        "recorded_at": "2026-01-15T10:00:01Z",
        "recipient": "dfe",
        "pupil_keys": ("a", "b"),
        "categories": ("personal",),
        "lawful_basis": "legal_obligation",
        "decision": "allowed",
        "policy_version": "v1",
    }
    listed = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return Entry(**{**base, **listed})


def test_a_reason_about_the_requester_is_kept_in_their_words() -> None:
    kept = reasons_for(["record.destroyed"], ["sen of pupils[1] was recorded destroyed"], {1})
    assert kept == [("record.destroyed", "sen of this pupil was recorded destroyed")]


def test_a_reason_about_another_pupil_is_left_out() -> None:
    assert reasons_for(["record.destroyed"], ["sen of pupils[0] was recorded destroyed"], {1}) == []


def test_a_reason_about_the_whole_event_is_kept() -> None:
    reason = "channel 'email' is not allowed for dfe in a census"
    assert reasons_for(["channel.not_permitted"], [reason], {3}) == [
        ("channel.not_permitted", reason)
    ]


def test_of_a_reason_naming_several_pupils_only_the_requesters_part_is_kept() -> None:
    reason = "consent 'C1' for pupils[0] was withdrawn; consent 'C2' for pupils[2] was withdrawn"
    assert reasons_for(["consent.withdrawn"], [reason], {2}) == [
        ("consent.withdrawn", "consent 'C2' for this pupil was withdrawn")
    ]


def test_the_verdict_shown_is_the_worst_over_the_rules_kept() -> None:
    assert verdict_of([]) == "allowed"
    assert verdict_of([("transfer.late", "x"), ("record.destroyed", "y")]) == "breach"


def test_a_census_breach_about_another_pupil_shows_as_allowed_for_the_requester(
    policy: Policy,
) -> None:
    breach = entry(
        1,
        decision="breach",
        rules=["record.destroyed"],
        reasons=["sen of pupils[0] was recorded destroyed"],
    )
    report = build_sar("b", Identity("B123", None), [breach], {}, policy)
    (shown,) = report["disclosures"]
    assert (shown["decision"], shown["rules"], shown["reasons"]) == ("allowed", [], [])
    assert "a" not in report["disclosures"][0].values()
    assert shown["pupils_in_event"] == 2


def test_a_reevaluation_is_shown_with_the_event_it_redecides(policy: Policy) -> None:
    first = entry(
        1,
        event_type="uk.school.pupil.referred.v1",
        recipient="agency:school-nursing",
        pupil_keys=["a"],
    )
    withdrawn = "consent 'C' for pupils[0] was withdrawn"
    later = entry(
        5,
        kind="reevaluation",
        refers_to=1,
        pupil_keys=["a"],
        decision="breach",
        rules=["consent.withdrawn"],
        reasons=[withdrawn],
    )
    report = build_sar("a", Identity("A1", None), [later, first], {}, policy)
    (shown,) = report["disclosures"]
    assert shown["decision"] == "breach" and shown["entries"] == [1, 5]
    assert report["entries"] == [1, 5]


def test_a_rejected_event_is_reported_apart_from_what_was_shared(policy: Policy) -> None:
    rejected = entry(2, decision="rejected", rules=["event.invalid"], reasons=["data.channel"])
    report = build_sar("a", Identity(None, None), [rejected], {}, policy)
    assert report["disclosures"] == [] and report["rejected"][0]["seq"] == 2


def observed(**fields: Any) -> tuple[Entry, dict[str, Any]]:
    """A census entry as the record of processing reads it, with its payload's data."""
    base = {"pupil_keys": ["a"], "categories": ["personal"], "decision": "allowed"}
    return entry(1, **{**base, **fields}), {"channel": "collect"}


def test_the_record_names_categories_shared_beyond_the_policy(policy: Policy) -> None:
    report = build_ropa(
        [observed(), observed(categories=["personal", "medical"], decision="breach")],
        policy,
        None,
        None,
    )
    (row,) = report["rows"]
    assert row["differences"] == ["categories the policy does not permit: medical"]
    assert (row["events"], row["pupils"], row["breach"]) == (2, 1, 1)


def test_each_row_of_the_record_says_the_purpose_its_pack_gives(policy: Policy) -> None:
    """Art 30(1)(b): the record names the purposes of the processing."""
    (row,) = build_ropa([observed()], policy, None, None)["rows"]
    permitted = policy.permission_for("dfe", "census")
    assert permitted is not None and permitted.purpose
    assert row["purpose"] == permitted.purpose


def test_the_record_flags_a_recipient_missing_from_the_policy(policy: Policy) -> None:
    (row,) = build_ropa([observed(recipient="agency:unknown")], policy, None, None)["rows"]
    assert row["differences"] == ["the recipient is not in the policy's registry"]


def test_what_a_rejected_event_claims_is_not_counted_as_practice(policy: Policy) -> None:
    (row,) = build_ropa(
        [observed(categories=["medical"], decision="rejected")], policy, None, None
    )["rows"]
    assert (row["categories"], row["differences"], row["rejected"]) == ([], [], 1)


def test_a_search_covered_an_entry_it_matched_within_its_seqs() -> None:
    details = {
        "filters": {"recipient": "dfe", "category": "personal"},
        "after_seq": 0,
        "through_seq": 10,
    }
    assert ShownEntries([entry(3)]).shown_by(details)
    assert not ShownEntries([entry(11)]).shown_by(details)
    assert not ShownEntries([entry(3)]).shown_by({**details, "after_seq": 3})
    assert not ShownEntries([entry(3)]).shown_by({**details, "filters": {"recipient": "la:850"}})
    until = {**details, "filters": {"until": "2026-01-15T10:00:00Z"}}
    assert not ShownEntries([entry(3)]).shown_by(until)


def test_a_search_covered_an_entry_when_any_of_the_pupils_entries_falls_in_its_window() -> None:
    shown = ShownEntries([entry(3), entry(7), entry(12)])
    filters = {"recipient": "dfe", "category": "personal"}
    assert shown.shown_by({"filters": filters, "after_seq": 3, "through_seq": 10})
    assert not shown.shown_by({"filters": filters, "after_seq": 7, "through_seq": 11})
    assert not shown.shown_by({"filters": filters, "after_seq": 0, "through_seq": 2})


def test_a_read_that_opened_one_of_the_pupils_entries_or_their_incident_showed_them() -> None:
    shown = ShownEntries([entry(3)])
    assert shown.shown_by({}, refers_to=3)
    assert shown.shown_by({"entries": [1, 3]}, refers_to=40)
    assert not shown.shown_by({"entries": [1, 2]}, refers_to=40)


def test_a_date_means_midnight_in_england_in_summer_and_winter() -> None:
    assert instant("2026-07-21", "since") == "2026-07-20T23:00:00.000000Z"
    assert instant("2026-01-21", "since") == "2026-01-21T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"upn": "X"}, "pupil: not a valid UPN"),
        ({"since": "2026-13-01"}, "since '2026-13-01': give a date"),
        ({"until": "0001-01-01T00:00:00+05:00"}, "until '0001-01-01T00:00:00\\+05:00': give a"),
        ({"kind": "decisions"}, "kind 'decisions': one of decision"),
        ({"event_type_": "pupil"}, "type 'pupil': give one of"),
    ],
)
def test_a_filter_that_cannot_be_used_says_which_and_why(
    given: dict[str, str], message: str
) -> None:
    with pytest.raises(BadFilter, match=message.replace("(", r"\(")):
        filters_from(str, **given)  # type: ignore[arg-type]


def test_a_upn_is_asked_for_by_its_pseudonym_only() -> None:
    keys = {"H801200001001": "k1"}
    filters = filters_from(keys.__getitem__, upn=" H801200001001 ")
    assert filters.asked() == {"pupil_key": "k1"}


def test_a_csv_cell_a_spreadsheet_would_run_is_defused() -> None:
    assert cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert cell(["a", "b"]) == '["a","b"]'
    assert cell(-3) == -3
