"""The line ``up`` keeps on a terminal, and which of the worker's log records it shows."""

from __future__ import annotations

from pipeline.cli.status import readable, status_line


def test_the_status_line_counts_events_by_decision_alerts_and_lag() -> None:
    decisions = {"allowed": 1100, "review": 60, "breach": 40, "rejected": 4}
    line = status_line(decisions, {"sent": 38, "pending": 2, "superseded": 5}, 0).plain
    assert line == (
        "recorded 1,204 events: allowed 1,100 · review 60 · breach 40 · rejected 4"
        " | alerts 38 sent, 2 waiting, 5 held back | lag 0"
    )


def test_what_is_not_known_yet_is_said_so() -> None:
    assert status_line(None, None, None).plain == "waiting for the ledger | lag ?"


def test_alerts_set_aside_are_shown() -> None:
    assert "3 set aside" in status_line({}, {"set_aside": 3}, 0).plain


def test_warnings_and_errors_are_shown_readably_and_the_rest_stays_in_the_file() -> None:
    warning = {"event": "send_failed", "level": "warning", "error": "KafkaTimeoutError"}
    shown = readable({**warning, "timestamp": "2026-12-01T00:00:00Z", "logger": "x"})
    assert shown is not None and shown.plain == "warning: send_failed error=KafkaTimeoutError"
    assert readable({"event": "batch_recorded", "level": "info"}) is None


def test_with_witnesses_the_line_says_how_far_behind_the_slowest_of_them_is() -> None:
    line = status_line({}, {}, 0, witness_lag=1200).plain
    assert line.endswith(" | lag 0 | witness lag 1,200")


def test_without_witnesses_the_line_says_nothing_of_them() -> None:
    assert "witness" not in status_line({}, {}, 0).plain
