"""The ledger's entry: made once, typed, read back as it was written, hashed as stored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.canonical import canonical_json
from pipeline.ledger.records.chain import (
    ENTRY_FIELDS,
    JSON_FIELDS,
    entry_leaf,
    hashable_form,
    stored_form,
)
from pipeline.ledger.records.entry import Entry, EntryKind
from schemas.alerts import ALERT_FIELDS

texts = st.text(max_size=12)
keys = st.lists(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), max_size=4)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    return Entry.of_event(
        draw(st.integers(1, 2**62)),
        recorded_at=draw(texts),
        event_id=draw(st.none() | texts),
        event_type=draw(st.none() | texts),
        occurred_at=draw(st.none() | texts),
        school=draw(st.none() | st.from_regex(r"[0-9]{6}", fullmatch=True)),
        recipient=draw(st.none() | texts),
        pupil_keys=draw(keys),
        categories=draw(st.lists(texts, max_size=3)),
        lawful_basis=draw(st.none() | texts),
        decision=draw(st.sampled_from(["allowed", "review", "breach", "rejected"])),
        rules=draw(st.lists(texts, max_size=3)),
        reasons=draw(st.lists(texts, max_size=3)),
        policy_version=draw(texts),
        payload_digest=draw(texts),
        position=draw(st.tuples(texts, st.integers(0, 9), st.integers(0, 2**40))),
        reevaluated_by=draw(st.none() | texts),
        refers_to=draw(st.none() | st.integers(1, 2**62)),
    )


def stored_row(entry: Entry) -> dict[str, object]:
    """The entry as the database holds it: JSON columns as text."""
    return {**stored_form(entry.hashed()), "prev_hash": "p" * 64, "hash": "h" * 64}


def test_its_fields_are_the_ledgers_hashed_fields_then_the_chains() -> None:
    assert Entry._fields == (*ENTRY_FIELDS, "prev_hash", "hash")


def test_it_cannot_be_changed_once_made() -> None:
    entry = Entry.act(1, EntryKind.READ, {"action": "search"}, recorded_at="2026-12-01T00:00:00Z")
    with pytest.raises(AttributeError):
        entry.decision = "allowed"  # type: ignore[misc]


@given(entries())
def test_an_entry_read_back_from_its_stored_row_is_the_entry_written(entry: Entry) -> None:
    read = Entry.from_row(stored_row(entry))
    assert read._replace(prev_hash=None, hash=None) == entry
    assert (read.prev_hash, read.hash) == ("p" * 64, "h" * 64)


@given(entries())
def test_its_leaf_is_the_leaf_the_chain_recomputes_from_its_stored_row(entry: Entry) -> None:
    """Ledger.append hashes the canonical JSON of the hashed fields as they are."""
    appended = canonical_json(entry.hashed())
    assert appended == entry_leaf(hashable_form(stored_form(entry.hashed())))


@given(entries())
def test_as_a_dict_its_lists_are_lists_for_json_answers(entry: Entry) -> None:
    shown = entry.as_dict()
    assert list(shown) == [*ENTRY_FIELDS, "prev_hash", "hash"]
    assert all(isinstance(shown[name], list) for name in JSON_FIELDS if name != "details")


def test_a_decision_holds_each_value_given_in_the_field_of_its_name() -> None:
    entry = Entry.of_event(
        4,
        recorded_at="<recorded_at>",
        event_id="<event_id>",
        event_type="<event_type>",
        occurred_at="<occurred_at>",
        school="<school>",
        recipient="<recipient>",
        pupil_keys=["<pupil_keys>"],
        categories=["<categories>"],
        lawful_basis="<lawful_basis>",
        decision="<decision>",
        rules=["<rules>"],
        reasons=["<reasons>"],
        policy_version="<policy_version>",
        payload_digest="<payload_digest>",
        position=("<topic>", 5, 6),
        refers_to=7,
    )
    listed = ("pupil_keys", "categories", "rules", "reasons")
    expected: dict[str, object] = {
        name: (f"<{name}>",) if name in listed else f"<{name}>" for name in Entry._fields
    }
    expected.update(seq=4, kind="decision", refers_to=7, partition=5, offset=6)
    expected.update(details=None, prev_hash=None, hash=None)
    assert entry._asdict() == expected


def test_a_reevaluation_has_no_position_and_names_what_re_decided_it() -> None:
    entry = Entry.of_event(
        9,
        recorded_at="2026-12-01T00:00:00Z",
        event_id="e1",
        event_type=None,
        occurred_at=None,
        school=None,
        recipient=None,
        pupil_keys=["k"],
        categories=[],
        lawful_basis=None,
        decision="breach",
        rules=["consent.withdrawn"],
        reasons=["withdrawn"],
        policy_version="v",
        payload_digest="d",
        position=("sharing.referrals", 0, 5),
        reevaluated_by="e7",
        refers_to=3,
    )
    assert (entry.kind, entry.refers_to) == ("reevaluation", 3)
    assert (entry.topic, entry.partition, entry.offset) == (None, None, None)
    assert entry.details == {"reevaluated_by": "e7"}


def test_an_act_names_each_pupil_once_in_the_order_given() -> None:
    entry = Entry.act(1, EntryKind.READ, {}, recorded_at="t", pupil_keys=["b", "a", "b"])
    assert entry.pupil_keys == ("b", "a")


def test_binding_side_rows_keeps_what_the_details_said() -> None:
    entry = Entry.act(1, EntryKind.READ, {"action": "open"}, recorded_at="t")
    bound = entry.binding({"payload": "d" * 64})
    assert bound.details == {"action": "open", "sides": {"payload": "d" * 64}}
    assert entry.details == {"action": "open"}


def test_an_alert_carries_the_alert_fields_of_its_entry() -> None:
    entry = Entry.act(4, EntryKind.WITNESS_REFUSAL, {}, recorded_at="t", reasons=["refused"])
    assert list(entry.alert_fields()) == list(ALERT_FIELDS)
    assert entry.alert_fields()["reasons"] == ["refused"]
