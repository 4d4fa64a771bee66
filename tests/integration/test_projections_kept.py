"""The projections kept on append (DESIGN invariant 10, issue 33): each re-decided event's
current decision and the desk's incidents are written in the transaction of the entry
that changes them, equal at every moment what a fold of the entries and the outbox makes,
filled for a ledger upgraded from before them, and any row edited behind the writer's
back is named by ``ledger verify`` (table, key, what the ledger says, what the row says).
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, select, text

from pipeline.engine import Position
from pipeline.incidents.desk import UnknownIncident, incidents, take_action
from pipeline.incidents.lifecycle import Action, ActionKind, Risk, TransitionRefused
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.storage import decision_projection, incident_projection, schema
from pipeline.ledger.storage.incident_projection import ALERTS, INCIDENTS
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.outbox import SENT, SUPERSEDED, due_alerts, mark_relayed
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from tests.factory import consent_given, consent_withdrawn, line, referral, upn
from tests.integration.breaches import KEY, ledger_with_every_kind_of_value

pytestmark = [pytest.mark.integration]

_positions = iter(range(1, 10**9))


def _kept(connection: Connection) -> tuple[Any, ...]:
    """Every row of the three projection tables, in key order."""
    return tuple(
        tuple(tuple(row) for row in connection.execute(select(table).order_by(key)))
        for table, key in (
            (decision_projection.CURRENT, decision_projection.CURRENT.c.event_seq),
            (INCIDENTS, INCIDENTS.c.id),
            (ALERTS, ALERTS.c.seq),
        )
    )


def _rebuilt_as_kept(connection: Connection) -> tuple[Any, ...]:
    """What a fold of the entries and the outbox makes, in the form of :func:`_kept`."""
    current = decision_projection.rebuilt(connection)
    by_id, filed = incident_projection.rebuilt(connection)
    return (
        tuple((e, s, d) for e, (s, d) in sorted(current.items())),
        tuple(tuple(vars_of(by_id[i])) for i in sorted(by_id)),
        tuple((s, i, e) for s, (i, e) in sorted(filed.items())),
    )


def vars_of(kept: incident_projection.Kept) -> list[Any]:
    return [getattr(kept, name) for name in incident_projection.Kept.__dataclass_fields__]


# -- random histories --------------------------------------------------------------------

PUPILS = (1, 2, 3, 4)
#: Steps of a history: a referral relying on consent (a breach until consent is given),
#: a consent given before it (re-decides it, allowed), a consent withdrawn before it
#: (re-decides it back), a DPO's action on an incident, the relay's pass over the outbox.
step = st.one_of(
    st.tuples(st.just("referral"), st.sampled_from(PUPILS), st.booleans()),
    st.tuples(st.just("consent"), st.sampled_from(PUPILS), st.booleans()),
    st.tuples(st.just("withdraw"), st.sampled_from(PUPILS), st.booleans()),
    st.tuples(st.just("act"), st.integers(0, 5), st.integers(0, 3)),
    st.tuples(st.just("relay"), st.just(0), st.booleans()),
)


def _event(kind: str, pupil: int, other_recipient: bool) -> dict[str, Any]:
    ref = f"C-{pupil}"
    if kind == "consent":
        return consent_given(upn(pupil), ref=ref)
    if kind == "withdraw":
        return consent_withdrawn(upn(pupil), ref=ref)
    return referral(
        pupils=[{"upn": upn(pupil)}],
        recipient="agency:camhs" if other_recipient else "agency:school-nursing",
        lawful_basis="consent",
        special_condition="9.2.a",
        consent_ref=ref,
        categories=["personal", "medical"],
    )


def _act(ledger: Ledger, index: int, choice: int) -> None:
    """One of the actions the incident ``index`` (of those there are) allows next."""
    with ledger.engine.connect() as connection:
        found = incidents(connection)
    if not found:
        return
    number = sorted(found)[index % len(found)]
    allowed = found[number].allowed()
    if not allowed:
        return
    now = datetime.now(UTC)
    action = Action(
        allowed[choice % len(allowed)],
        "dpo",
        now,
        risk=list(Risk)[choice % len(Risk)],
        reasons="seen to",
        ico_reference="ICO-1",
        reported_at=now,
    )
    with suppress(TransitionRefused, UnknownIncident):  # a refused action appends nothing
        take_action(ledger, number, action)


def _relay(ledger: Ledger, supersede_only: bool) -> None:
    due = due_alerts(ledger)
    mark_relayed(ledger, due.superseded, SUPERSEDED)
    if not supersede_only:
        mark_relayed(ledger, [alert.seq for alert in due.send], SENT)


def _play(ledger: Ledger, writer: LedgerWriter, steps: list[tuple[str, int, Any]]) -> None:
    """Play ``steps``, the events among them written a few at a time (a batch may hold a
    referral and the consent that re-decides it)."""
    batch: list[tuple[bytes, Position]] = []
    for kind, number, option in steps:
        if kind in ("referral", "consent", "withdraw"):
            batch.append((line(_event(kind, number, option)), Position.line("h", next(_positions))))
            if len(batch) < 3:
                continue
        if batch:
            writer.write(batch)
            batch = []
        if kind == "act":
            _act(ledger, number, option)
        elif kind == "relay":
            _relay(ledger, option)
    if batch:
        writer.write(batch)


@pytest.mark.slow
def test_every_projection_kept_equals_the_one_rebuilt_from_the_entries(
    db_url: str, policy: Policy
) -> None:
    """Over random histories of referrals, late consents and withdrawals re-deciding them,
    DPOs acting on incidents and the relay superseding alerts, the rows kept on append are
    the rows a fold of the whole ledger makes, after every history (each adds to the
    ledger of the ones before), and the ledger verifies."""
    ledger = Ledger.open(db_url)
    schema.upgrade(ledger.engine)
    writer = LedgerWriter(ledger, policy, pseudonymiser(KEY))
    redecided: list[int] = []

    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(step, min_size=1, max_size=14))
    def history(steps: list[tuple[str, int, Any]]) -> None:
        _play(ledger, writer, steps)
        with ledger.engine.connect() as connection:
            assert _kept(connection) == _rebuilt_as_kept(connection)
            redecided.append(len(decision_projection.rebuilt(connection)))

    history()
    with ledger.engine.connect() as connection:
        result = verify(connection)
        assert result.ok, result.fault
        actions = connection.execute(
            text("SELECT count(*) FROM ledger_entry WHERE kind = 'incident_action'")
        ).scalar_one()
        superseded = connection.execute(
            text("SELECT count(*) FROM alert_outbox WHERE status = 'superseded'")
        ).scalar_one()
    assert redecided[-1] > 0, "no history re-decided an event"
    assert actions > 0, "no history acted on an incident"
    assert superseded > 0, "no history superseded an alert"


# -- what verify names -------------------------------------------------------------------


@pytest.fixture
def ledger(db_url: str, policy: Policy) -> Ledger:
    """Every kind of value (a late withdrawal re-deciding a referral, incidents of the
    schools and the log's own), an incident acknowledged."""
    ledger = ledger_with_every_kind_of_value(db_url, policy)
    with ledger.engine.connect() as connection:
        first = min(incidents(connection))
    take_action(ledger, first, Action(ActionKind.ACKNOWLEDGE, "dpo", datetime.now(UTC)))
    return ledger


def _edit(ledger: Ledger, statement: str, **values: Any) -> None:
    """``statement`` as the application's role may run it: no trigger guards these rows
    (the application updates them), so the check is verify's."""
    with ledger.engine.begin() as connection:
        connection.execute(text(statement), values)


def _first_fault(ledger: Ledger) -> tuple[int | None, str]:
    with ledger.engine.connect() as connection:
        result = verify(connection)
    assert not result.ok, "ledger verify passed"
    return result.fault_seq, str(result.fault)


def _one(ledger: Ledger, statement: str) -> Any:
    with ledger.engine.connect() as connection:
        return connection.execute(text(statement)).one()


def test_a_ledger_written_through_the_code_verifies(ledger: Ledger) -> None:
    with ledger.engine.connect() as connection:
        assert verify(connection).ok
        assert decision_projection.rebuilt(connection), "nothing re-decided"


def test_an_incident_made_less_grave_is_named(ledger: Ledger) -> None:
    number, severity = _one(ledger, "SELECT id, severity FROM incident ORDER BY id LIMIT 1")
    _edit(ledger, "UPDATE incident SET severity = 'low' WHERE id = :i", i=number)
    seq, fault = _first_fault(ledger)
    assert seq == number
    assert fault == (
        f"incident: incident {number} has severity 'low', but the ledger says {severity!r}"
    )


def test_an_incident_shown_closed_is_named(ledger: Ledger) -> None:
    (number,) = _one(ledger, "SELECT id FROM incident WHERE actions = 1")
    _edit(ledger, "UPDATE incident SET last_action = 'close' WHERE id = :i", i=number)
    seq, fault = _first_fault(ledger)
    assert seq == number
    assert "last_action 'close', but the ledger says 'acknowledge'" in fault


def test_an_incident_removed_from_the_desk_is_named(ledger: Ledger) -> None:
    (number,) = _one(ledger, "SELECT max(id) FROM incident")
    _edit(ledger, "DELETE FROM incident WHERE id = :i", i=number)
    seq, fault = _first_fault(ledger)
    assert (seq, fault) == (
        number,
        f"incident: the ledger makes incident {number}, but its row is missing",
    )


def test_an_alert_filed_under_another_incident_is_named(ledger: Ledger) -> None:
    first, last = _one(ledger, "SELECT min(id), max(id) FROM incident")
    alert, event = _one(
        ledger,
        f"SELECT seq, event_id FROM incident_alert WHERE incident = {last} ORDER BY seq LIMIT 1",
    )
    _edit(ledger, "UPDATE incident_alert SET incident = :f WHERE seq = :s", f=first, s=alert)
    _, fault = _first_fault(ledger)
    with ledger.engine.connect() as connection:
        named = [f for _, f in incident_projection.incident_faults(connection)]
    assert any(
        f.startswith(f"incident_alert: alert {alert} is filed under incident {first}")
        and f.endswith(f"but the ledger puts it on {last}" + (f" (event {event})" if event else ""))
        for f in named
    ), named
    assert fault in named


def test_an_alert_filing_removed_is_named(ledger: Ledger) -> None:
    alert, incident = _one(ledger, "SELECT seq, incident FROM incident_alert ORDER BY seq LIMIT 1")
    _edit(ledger, "DELETE FROM incident_alert WHERE seq = :s", s=alert)
    with ledger.engine.connect() as connection:
        named = dict(incident_projection.incident_faults(connection))
    assert named[alert].startswith(f"incident_alert: alert {alert} is on incident {incident}"), (
        named
    )
    assert named[alert].endswith("as the ledger says, but its row is missing")


def test_an_alert_filing_inserted_past_every_alert_is_named(ledger: Ledger) -> None:
    """A row the outbox does not bear out, filed after the last alert: the check reads
    the rows to their end, not only as far as the alerts go."""
    (first,) = _one(ledger, "SELECT min(id) FROM incident")
    (top,) = _one(ledger, "SELECT max(seq) FROM ledger_entry")
    _edit(
        ledger,
        "INSERT INTO incident_alert (seq, incident, event_id) VALUES (:s, :i, NULL)",
        s=top + 5,
        i=first,
    )
    with ledger.engine.connect() as connection:
        named = dict(incident_projection.incident_faults(connection))
    assert named[top + 5] == (
        f"incident_alert: alert {top + 5} is filed under incident {first}, but it is on no "
        "incident on the desk (the row was inserted, or its alert superseded)"
    )


def test_a_current_decision_changed_is_named(ledger: Ledger) -> None:
    event, seq, decision = _one(ledger, "SELECT event_seq, seq, decision FROM current_decision")
    _edit(ledger, "UPDATE current_decision SET decision = 'allowed' WHERE event_seq = :e", e=event)
    fault_seq, fault = _first_fault(ledger)
    assert fault_seq == event
    assert fault == (
        f"current_decision: event seq {event}: the ledger says its current decision is seq "
        f"{seq} ({decision}), the row says {seq} (allowed)"
    )


def test_a_current_decision_removed_is_named(ledger: Ledger) -> None:
    event, seq, decision = _one(ledger, "SELECT event_seq, seq, decision FROM current_decision")
    _edit(ledger, "DELETE FROM current_decision WHERE event_seq = :e", e=event)
    fault_seq, fault = _first_fault(ledger)
    assert fault_seq == event
    assert f"current decision is seq {seq} ({decision}), but its row is missing" in fault


def test_a_current_decision_inserted_is_named(ledger: Ledger) -> None:
    (event,) = _one(
        ledger,
        "SELECT min(seq) FROM ledger_entry WHERE kind = 'decision' AND seq NOT IN "
        "(SELECT event_seq FROM current_decision)",
    )
    _edit(
        ledger,
        "INSERT INTO current_decision (event_seq, seq, decision) VALUES (:e, :e, 'breach')",
        e=event,
    )
    fault_seq, fault = _first_fault(ledger)
    assert fault_seq == event
    assert "holds no re-evaluation of it (the row was inserted or changed)" in fault


# -- a ledger upgraded from before the projections ---------------------------------------


def test_migration_0014_fills_the_projections_of_a_ledger_written_before_them(
    ledger: Ledger,
) -> None:
    """A ledger at 0013 with entries, alerts and actions: the upgrade makes the rows the
    append path would have kept."""
    with ledger.engine.connect() as connection:
        kept = _kept(connection)
    assert kept[0] and kept[1] and kept[2]
    with ledger.engine.begin() as connection:  # the ledger as migration 0013 left it
        for table in ("current_decision", "incident_alert", "incident"):
            connection.execute(text(f"DROP TABLE {table}"))
        connection.execute(text("UPDATE alembic_version SET version_num = '0013'"))
    assert schema.current_revision(ledger.engine) == "0013"
    config = schema._config()
    with ledger.engine.begin() as connection:  # 0014 alone: the later ones are made already
        config.attributes["connection"] = connection
        command.upgrade(config, "0014")
        command.stamp(config, "head")
    with ledger.engine.connect() as connection:
        assert _kept(connection) == kept
        assert verify(connection).ok
