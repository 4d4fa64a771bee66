"""What the agents do with the writer's results, without a broker."""

from __future__ import annotations

import itertools

from agents.app import deadletters
from agents.writer import Handled
from pipeline.backoff import backoff_delays
from pipeline.engine import Position
from schemas.decisions import ALLOWED, Decision, RuleId


def _at(offset: int) -> Position:
    return Position("sharing.referral", 0, offset)


def test_only_records_that_are_not_contract_events_are_dead_lettered() -> None:
    records = [(b"not json", _at(1)), (b"{}", _at(2)), (b'{"ok": 1}', _at(3))]
    handled = [
        Handled("decision", _at(1), None, Decision.rejected(RuleId.EVENT_INVALID, "not JSON")),
        Handled(
            "duplicate", _at(2), "e-2", Decision.rejected(RuleId.EVENT_INVALID, "data: missing")
        ),
        Handled("decision", _at(3), "e-3", ALLOWED),
        Handled("decision", _at(4), "e-4", Decision.rejected(RuleId.EVENT_ID_REUSED, "reused")),
    ]
    assert deadletters(handled, records) == [
        ((b"not json", _at(1)), "not JSON"),
        ((b"{}", _at(2)), "data: missing"),
    ]


def test_a_re_evaluation_is_never_dead_lettered() -> None:
    rejected = Decision.rejected(RuleId.EVENT_INVALID, "x")
    assert deadletters([Handled("reevaluation", _at(1), "e", rejected)], [(b"x", _at(1))]) == []


def test_backoff_grows_to_its_cap_and_stays_there() -> None:
    delays = list(itertools.islice(backoff_delays(first=0.5, cap=4.0), 8))
    assert 0.4 <= delays[0] <= 0.6
    assert delays[1] > delays[0]
    assert all(3.2 <= d <= 4.8 for d in delays[4:])
