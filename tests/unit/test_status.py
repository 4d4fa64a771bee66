"""The line ``up`` keeps on a terminal, and which of the worker's log records it shows."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import typer
from rich.text import Text

from pipeline.cli.status import (
    Supervision,
    Watch,
    broker_died_message,
    logs_batches,
    lost_message,
    readable,
    status_line,
)


def test_the_status_line_counts_events_by_decision_alerts_and_lag() -> None:
    decisions = {"allowed": 1100, "review": 60, "breach": 40, "rejected": 4}
    line = status_line(decisions, {"sent": 38}, 0).plain
    assert line == (
        "recorded 1,204 events: allowed 1,100 · review 60 · breach 40 · rejected 4"
        " | alerts 38 sent | awaiting receipt 0"
    )


def test_alerts_not_yet_sent_are_said_to_be_held_for_late_facts_and_for_how_long() -> None:
    line = status_line({}, {"sent": 38, "pending": 9}, 0, hold=60).plain
    assert " | alerts 38 sent, 9 held 60 s for late facts | " in line


def test_alerts_a_late_fact_made_needless_are_said_to_be_not_sent_and_why() -> None:
    line = status_line({}, {"sent": 38, "superseded": 5}, 0, hold=60).plain
    assert " | alerts 38 sent, 5 not sent: a late fact re-decided the event | " in line


def test_records_received_again_are_counted_as_duplicates_recorded_once() -> None:
    line = status_line({"allowed": 10}, {}, 0, duplicates=1).plain
    assert line.startswith("recorded 10 events: allowed 10 · review 0 · breach 0 · rejected 0")
    assert " | 1 duplicate (sent again, recorded once) | " in line


def test_without_duplicates_or_knowing_of_them_the_line_says_nothing_of_them() -> None:
    assert "duplicate" not in status_line({}, {}, 0, duplicates=0).plain
    assert "duplicate" not in status_line({}, {}, 0, duplicates=None).plain


def test_the_live_line_counts_the_duplicates_the_workers_log_reports(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    batches = [{"event": "batch_recorded", "level": "info", "duplicates": n} for n in (0, 2, 1)]
    log.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in batches))
    watch = Watch(cast(Any, None), log, cast(Any, None), count_duplicates=True)
    assert watch.new_lines() == []  # none of them is shown above the line
    assert watch.duplicates == 3


@pytest.mark.parametrize(
    ("level", "counted"), [(None, True), ("INFO", True), ("debug", True), ("WARNING", False)]
)
def test_duplicates_are_counted_only_where_the_worker_logs_its_batches(
    level: str | None, counted: bool
) -> None:
    assert logs_batches(level) is counted


def test_what_is_not_known_yet_is_said_so() -> None:
    assert status_line(None, None, None).plain == "waiting for the ledger | awaiting receipt ?"


def test_alerts_set_aside_are_shown() -> None:
    assert "3 set aside" in status_line({}, {"set_aside": 3}, 0).plain


def test_warnings_and_errors_are_shown_readably_and_the_rest_stays_in_the_file() -> None:
    warning = {"event": "send_failed", "level": "warning", "error": "KafkaTimeoutError"}
    shown = readable({**warning, "timestamp": "2026-12-01T00:00:00Z", "logger": "x"})
    assert shown is not None and shown.plain == "warning: send_failed error=KafkaTimeoutError"
    assert readable({"event": "batch_recorded", "level": "info"}) is None


def test_with_witnesses_the_line_says_how_far_behind_the_slowest_of_them_is() -> None:
    line = status_line({}, {}, 0, witness_lag=1200).plain
    assert line.endswith(" | awaiting receipt 0 | witness lag 1,200")


def test_without_witnesses_the_line_says_nothing_of_them() -> None:
    assert "witness" not in status_line({}, {}, 0).plain


class _Stopped:
    """Ctrl-C pressed once (``again`` set too for a second one), without signal handlers."""

    def __init__(self, twice: bool = False) -> None:
        self.event, self.again = threading.Event(), threading.Event()
        self.event.set()
        if twice:
            self.again.set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


class _Worker:
    running = True
    killed = False

    def kill(self) -> None:
        self.killed = True


class _Pipeline:
    """A pipeline whose input topics hold ``lags`` records at each look, in turn."""

    broker_died = False
    embedded = object()

    def __init__(self, *lags: int | None) -> None:
        self.lags = list(lags)
        self.worker = _Worker()
        self.worker.process = object()  # type: ignore[attr-defined]

    def unrecorded(self) -> int | None:
        return self.lags.pop(0) if len(self.lags) > 1 else self.lags[0]


class _Said:
    ledger_unavailable = False

    def __init__(self) -> None:
        self.said: list[str] = []
        self.lines: list[str] = []

    def say(self, message: str) -> None:
        self.said.append(message)

    def show(self, lag: int | None, stopping: Text | None) -> None:
        self.lines.append(stopping.plain if stopping else "")


def _supervision(pipeline: _Pipeline, stop: _Stopped, out: _Said) -> Supervision:
    return Supervision(cast(Any, pipeline), cast(Any, stop), out, every=0.01)


def test_ctrl_c_says_how_many_records_are_not_yet_recorded_and_waits_until_none_are() -> None:
    pipeline, out = _Pipeline(81, 81, 81, 40, 0), _Said()
    _supervision(pipeline, _Stopped(), out).run()
    assert out.said[0].startswith("stopping: 81 records accepted but not yet recorded")
    assert "Ctrl-C again stops at once and loses them" in out.said[0]
    assert "stopping: recorded 41 of 81, 40 left" in out.lines
    assert out.said[-1] == "all 81 records recorded; stopping"
    assert not pipeline.worker.killed


def test_ctrl_c_with_nothing_left_to_record_stops_without_a_word() -> None:
    out = _Said()
    _supervision(_Pipeline(0), _Stopped(), out).run()
    assert out.said == []


def test_nothing_recorded_for_a_while_is_said_as_waiting_for_the_ledger() -> None:
    out = _Said()
    stop = _Stopped()
    threading.Timer(0.5, stop.again.set).start()
    with pytest.raises(typer.Exit):
        _supervision(_Pipeline(81), stop, out).run()
    assert any(line.endswith("81 left · waiting for the ledger") for line in out.lines)
    assert any("waiting for the ledger (database unavailable?" in s for s in out.said)


def test_a_second_ctrl_c_kills_the_worker_and_says_what_is_lost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipeline = _Pipeline(81)
    with pytest.raises(typer.Exit) as stopped:
        _supervision(pipeline, _Stopped(twice=True), _Said()).run()
    assert stopped.value.exit_code == 1
    assert pipeline.worker.killed
    said = capsys.readouterr().err
    assert "81 records not recorded are lost" in said
    assert "their senders hold no receipt for them" in said


def test_on_apache_kafka_the_records_a_second_ctrl_c_leaves_stay_for_the_next_worker() -> None:
    said = lost_message(12, embedded=False)
    assert "12 records not recorded stay on the broker" in said
    assert "lost" not in said


def test_the_broker_dying_names_the_records_it_held_as_lost() -> None:
    said = broker_died_message(None, 5, restarting=True)
    assert "it held 5 records not yet recorded in memory only, now lost" in said
    assert said.endswith("starting it again")


def test_records_still_arriving_while_stopping_are_waited_for_too() -> None:
    pipeline, out = _Pipeline(10, 10, 30, 5, 0), _Said()
    _supervision(pipeline, _Stopped(), out).run()
    assert "stopping: recorded 25 of 30, 5 left" in out.lines
    assert out.said[-1] == "all 30 records recorded; stopping"


def test_the_oldest_record_awaiting_a_receipt_is_said_with_its_age() -> None:
    line = status_line({}, {}, 12, oldest_age=75).plain
    assert line.endswith("| awaiting receipt 12, oldest 1 min 15 s")


def test_no_age_is_said_when_nothing_awaits_a_receipt() -> None:
    assert status_line({}, {}, 0, oldest_age=75).plain.endswith("| awaiting receipt 0")
