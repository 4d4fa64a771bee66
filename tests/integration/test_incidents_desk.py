"""The breach desk on a real ledger: incidents from alerts, actions sealed in the chain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.incidents.desk import incidents, take_action
from pipeline.incidents.lifecycle import (
    Action,
    ActionKind,
    Incident,
    Risk,
    Status,
    TransitionRefused,
)
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.storage.store import ENTRY, Ledger
from pipeline.policy.pack import Policy
from tests.integration.breaches import ledger_with_breaches

pytestmark = pytest.mark.integration
runner = CliRunner()
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


@pytest.fixture
def ledger(db_url: str, policy: Policy) -> Ledger:
    return ledger_with_breaches(db_url, policy)


def _incidents(ledger: Ledger) -> dict[int, Incident]:
    with ledger.engine.connect() as connection:
        return dict(incidents(connection))


def _entries(ledger: Ledger) -> int:
    with ledger.engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT count(*) FROM ledger_entry").scalar_one())


def test_alerts_with_the_same_cause_are_one_incident(ledger: Ledger) -> None:
    found = _incidents(ledger)
    assert sorted(len(i.entries) for i in found.values()) == [1, 2]


def test_each_action_is_appended_to_the_chain_and_moves_the_incident(ledger: Ledger) -> None:
    incident_id = next(i for i, found in _incidents(ledger).items() if len(found.entries) == 2)
    for action in (
        Action(ActionKind.ACKNOWLEDGE, "dpo", NOW),
        Action(ActionKind.ASSESS, "dpo", NOW, risk=Risk.HIGH_RISK, reasons="medical notes"),
        Action(ActionKind.REPORT, "dpo", NOW, ico_reference="ICO-77", reported_at=NOW),
        Action(ActionKind.NOTIFY_SUBJECTS, "dpo", NOW),
        Action(ActionKind.CLOSE, "dpo", NOW, reasons="agency confirmed deletion"),
    ):
        take_action(ledger, incident_id, action)
    incident = _incidents(ledger)[incident_id]
    assert incident.status is Status.CLOSED
    assert [a.kind for a in incident.history][1:3] == [ActionKind.ASSESS, ActionKind.REPORT]
    with ledger.engine.connect() as connection:
        assert verify(connection).ok
        acted = ENTRY.c.kind == "incident_action"
        statement = select(ENTRY.c.details).where(acted).order_by(ENTRY.c.seq)
        by = connection.execute(statement).scalars().all()
    assert len(by) == 5 and all('"by":"dpo"' in d for d in by)


def test_a_refused_action_appends_nothing(ledger: Ledger) -> None:
    incident_id = next(iter(_incidents(ledger)))
    before = _entries(ledger)
    with pytest.raises(TransitionRefused, match="assessed before it is closed"):
        take_action(ledger, incident_id, Action(ActionKind.CLOSE, "dpo", NOW, reasons="x"))
    assert _entries(ledger) == before


def test_the_cli_lists_the_queue_and_refuses_closing_an_unassessed_breach(
    ledger: Ledger, db_url: str
) -> None:
    listed = runner.invoke(app, ["incidents", "list", "--db", db_url], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "no consent on record" in listed.output and "open" in listed.output
    incident_id = str(next(iter(_incidents(ledger))))
    refused = runner.invoke(
        app, ["incidents", "close", incident_id, "--reason", "x", "--db", db_url]
    )
    assert refused.exit_code == 1
    assert "must be assessed before it is closed" in refused.output
    acked = runner.invoke(app, ["incidents", "ack", incident_id, "--by", "dpo", "--db", db_url])
    assert acked.exit_code == 0, acked.output
    shown = runner.invoke(
        app, ["incidents", "show", incident_id, "--db", db_url], env={"COLUMNS": "200"}
    )
    assert "acknowledge by dpo" in shown.output and "next: assess" in shown.output
    missing = runner.invoke(app, ["incidents", "ack", "999999", "--db", db_url])
    assert missing.exit_code == 2 and "no incident 999999" in missing.output
