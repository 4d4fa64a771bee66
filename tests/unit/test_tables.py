"""Every table the command line prints fits a terminal of 80 columns with no word broken
(no ``agency:sch`` above ``ool-nursing``, no ``legal_obli…``), filled with the longest
values a school's ledger and the default pack really hold."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from pipeline.checking import Summary
from pipeline.cli.demo import decision_tables
from pipeline.cli.incidents import queue_table
from pipeline.cli.ledger import entries_table, stats_tables
from pipeline.cli.reconcile import missing_table
from pipeline.cli.terminal import policy_tables, summary_table
from pipeline.cli.users import users_table
from pipeline.incidents.lifecycle import Action, ActionKind, Cause, Incident, Risk
from pipeline.policy.pack import Policy
from pipeline.users import Role, User
from schemas.alerts import Severity

WIDTH = 80
#: The box-drawing characters that part cells, and the spaces between words.
_APART = re.compile(r"[\s\u2500-\u257f]+")
LONGEST_RECIPIENT = "agency:speech-language-therapy"
CLI = Path(__file__).resolve().parents[2] / "pipeline" / "cli"


def words_broken(table: Table) -> list[str]:
    """What ``table``, printed 80 columns wide, shows that is not a whole word of its
    title, headers or cells: a word folded over two lines, or cut short with an ellipsis.
    (Also that no line is wider than 80 columns.)"""
    console = Console(width=WIDTH, record=True, file=io.StringIO(), color_system=None)
    console.print(table)
    printed = console.export_text()
    assert max(len(line) for line in printed.splitlines()) <= WIDTH, printed
    whole = set(_APART.split(_text(table.title) + "\n" + _text(table.caption)))
    for column in table.columns:
        whole |= set(_APART.split(_text(column.header)))
        for cell in column.cells:
            whole |= set(_APART.split(_text(cell)))
    return [token for token in _APART.split(printed) if token and token not in whole]


def _text(renderable: Any) -> str:
    if renderable is None:
        return ""
    if isinstance(renderable, Group):
        return "\n".join(_text(part) for part in renderable.renderables)
    return renderable.plain if isinstance(renderable, Text) else str(renderable)


def test_the_check_that_sees_broken_words_sees_them() -> None:
    """The measure itself: a table of six narrow columns breaks the recipient's name."""
    table = Table(*(f"column {n}" for n in range(6)))
    table.add_row(LONGEST_RECIPIENT, *("legal_obligation, public_task" for _ in range(5)))
    assert words_broken(table)


def test_the_policy_pack_shows_in_tables_with_whole_words(policy: Policy) -> None:
    for table in policy_tables(policy):
        assert words_broken(table) == [], table.title


def test_the_decisions_check_counts_show_with_whole_words() -> None:
    summary = Summary()
    summary.duplicates, summary.reevaluations = 12, 3
    assert words_broken(summary_table(summary)) == []


def test_the_demos_decisions_and_rules_show_with_whole_words() -> None:
    final = {
        "a": ("breach", ("transfer.wrong_destination", "retention.expired")),
        "b": ("review", ("transfer.no_destination",)),
    }
    for table in decision_tables(final):
        assert words_broken(table) == []


def _entry(seq: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "kind": kind,
        "refers_to": None,
        "event_type": "uk.school.consent.withdrawn.v1",
        "occurred_at": "2025-10-03T11:43:00.000000Z",
        "recorded_at": "2026-12-06T21:39:41.717206Z",
        "recipient": LONGEST_RECIPIENT,
        "decision": "rejected",
        "rules": [],
        "details": {},
    } | fields


def test_ledger_entries_show_with_whole_words() -> None:
    rows = [
        _entry(
            1_204_733,
            "reevaluation",
            refers_to=1_204_001,
            event_type="uk.school.pupil.transferred.v1",
            rules=["recipient.unknown", "transfer.late", "transfer.wrong_destination"],
        ),
        _entry(1_204_734, "decision", rules=["event.invalid"]),
        _entry(
            1_204_735,
            "read",
            event_type=None,
            recipient=None,
            decision=None,
            details={"action": "export", "by": "internal-audit-westfields", "via": "api"},
        ),
    ]
    assert words_broken(entries_table(rows)) == []


def test_the_ledgers_counts_show_with_whole_words() -> None:
    figures = {
        "by_kind": {"decision": 1200, "reevaluation": 4, "incident_action": 9, "user_action": 2},
        "by_decision": {"allowed": 1100, "rejected": 4},
        "by_event_type": {"uk.school.consent.withdrawn.v1": 2, "uk.school.census.submitted.v1": 3},
        "alerts": {"sent": 38, "superseded": 5, "set_aside": 1},
    }
    for table in stats_tables(figures):
        assert words_broken(table) == [], table.title


def test_what_reconcile_finds_missing_shows_with_whole_words() -> None:
    rows: list[dict[str, Any]] = [
        {
            "missing_from": "ledger",
            "event_id": "c7e1f7c2-6f7e-4a55-9d3e-2f4f3b1a9e01",
            "where": "done/850200_CTF_8502002_001.xml.receipts.jsonl:12",
        },
        {
            "missing_from": "files",
            "event_id": "850200-0d1e2f3a4b5c6d7e8f90-00001",
            "seq": 1_204_733,
            "type": "uk.school.pupil.transferred.v1",
            "occurred_at": "2026-07-21T08:30:00.000000Z",
        },
    ]
    assert words_broken(missing_table(rows)) == []


def test_the_queue_shows_with_whole_words() -> None:
    now = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
    cause = Cause("transfer.wrong_destination", LONGEST_RECIPIENT, date(2026, 12, 3), "116234")
    at = now - timedelta(hours=70)
    notified = (
        Action(ActionKind.ACKNOWLEDGE, "Dana Jones", at),
        Action(ActionKind.ASSESS, "Dana Jones", at, Risk.HIGH_RISK, "medical notes"),
        Action(ActionKind.REPORT, "Dana Jones", at, ico_reference="IC-123456-A1B2"),
        Action(ActionKind.NOTIFY_SUBJECTS, "Dana Jones", at),
    )
    listed = [
        (1_204_733, Incident(cause, Severity.MEDIUM, now - timedelta(hours=80), True)),
        (1_204_734, Incident(cause, Severity.HIGH, now - timedelta(hours=75), True, (), notified)),
        (1_204_735, Incident(cause, Severity.LOW, now, False)),
    ]
    events = {1_204_733: 0, 1_204_734: 1, 1_204_735: 12_345}
    assert words_broken(queue_table(listed, events, now)) == []


def test_the_desks_users_show_with_whole_words() -> None:
    found = [
        User("internal-audit-westfields", Role.AUDITOR, "2027-03-06T21:41:00.000000Z"),
        User(
            "Sam Lee",
            Role.DPO,
            "2027-03-06T21:41:00.000000Z",
            "2026-12-06T21:41:00.000000Z",
            frozenset({"116234", "116235", "116236"}),
        ),
    ]
    assert words_broken(users_table(found)) == []


def test_no_table_of_the_command_line_folds_a_word_over_two_lines() -> None:
    folding = [p.name for p in CLI.glob("*.py") if 'overflow="fold"' in p.read_text()]
    assert folding == []
