"""The hash chain: an entry hashed as it is appended is the entry an auditor re-hashes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.canonical import canonical_json
from pipeline.ledger.records.chain import (
    ENTRY_FIELDS,
    GENESIS,
    JSON_FIELDS,
    entry_hash,
    entry_leaf,
    hashable_form,
    link_hash,
    stored_form,
    verify_chain,
)

texts = st.text(max_size=12)
scalars = st.none() | st.integers(-(2**53), 2**53) | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def entry_fields(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {name: draw(scalars) for name in ENTRY_FIELDS}
    for name in JSON_FIELDS:
        fields[name] = draw(st.lists(json_values, max_size=4))
    fields["details"] = draw(st.none() | st.dictionaries(texts, json_values, max_size=3))
    return fields


@given(entry_fields())
def test_a_new_entry_hashes_as_its_stored_row_is_checked(fields: dict[str, Any]) -> None:
    stored = stored_form(fields)
    new = link_hash(GENESIS, canonical_json(fields))  # as Ledger.append hashes it
    assert new == entry_hash(GENESIS, hashable_form(stored))


@given(entry_fields())
def test_a_new_entrys_leaf_is_the_leaf_recomputed_from_its_stored_row(
    fields: dict[str, Any],
) -> None:
    assert canonical_json(fields) == entry_leaf(hashable_form(stored_form(fields)))


@given(entry_fields())
def test_a_stored_row_hashes_the_same_whatever_else_it_holds(fields: dict[str, Any]) -> None:
    row = {**hashable_form(stored_form(fields)), "prev_hash": GENESIS, "hash": "x" * 64}
    assert entry_hash(GENESIS, row) == link_hash(GENESIS, canonical_json(fields))


def test_a_changed_field_breaks_the_chain_at_its_entry() -> None:
    rows = []
    prev = GENESIS
    for seq in (1, 2, 3):
        fields: dict[str, Any] = {name: None for name in ENTRY_FIELDS} | {
            "seq": seq,
            "kind": "decision",
            "pupil_keys": [],
            "categories": [],
            "rules": [],
            "reasons": [],
        }
        digest = link_hash(prev, canonical_json(fields))
        rows.append({**hashable_form(stored_form(fields)), "prev_hash": prev, "hash": digest})
        prev = digest
    assert verify_chain(rows).ok
    rows[1]["kind"] = "reevaluation"
    result = verify_chain(rows)
    assert (result.fault_seq, result.count) == (2, 1)
