"""``ledger verify`` compares each alert's filing, as the fold of the outbox makes it,
with its ``incident_alert`` row while both stream in seq order (issue 33: a check of ten
years of alerts holds neither side whole). The pairing must meet every seq of either."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.ledger.storage.incident_projection import _paired

filings = st.dictionaries(
    st.integers(1, 200), st.tuples(st.integers(1, 5), st.none() | st.sampled_from("ab"))
)


@given(filings, filings)
def test_every_seq_of_either_side_is_paired_once_in_order(
    said: dict[int, tuple[int, str | None]], kept: dict[int, tuple[int, str | None]]
) -> None:
    paired = list(_paired(iter(sorted(said.items())), iter(sorted(kept.items()))))
    assert [seq for seq, _, _ in paired] == sorted(said.keys() | kept.keys())
    assert all((s, k) == (said.get(seq), kept.get(seq)) for seq, s, k in paired)


def test_nothing_on_either_side_pairs_nothing() -> None:
    assert list(_paired(iter(()), iter(()))) == []
