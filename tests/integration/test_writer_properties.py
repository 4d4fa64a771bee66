"""Whatever bytes arrive on a topic, the writer records each record once and goes on.

Driven through the writer's whole path (read, decide, append in one transaction) on a
real SQLite ledger, with records no MIS should send: arbitrary bytes, arbitrary JSON,
valid events with one value replaced, and JSON nested past every bound.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.engine import Position
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.reading.queries import entry_count
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from schemas.alerts import MAX_ALERT_BYTES
from schemas.events import DEFAULT_TOPIC, MAX_REF_LENGTH
from tests.factory import (
    SCHOOL,
    census,
    consent_given,
    consent_withdrawn,
    destroyed,
    left,
    referral,
    transfer,
    upn,
)
from tests.two_schools import OTHER_SCHOOL, trust_events
from tests.unit.test_check_properties import _paths, _set, dumps, json_values
from tests.unit.test_engine import final_decisions

pytestmark = pytest.mark.integration

VALID = [census(), transfer(), referral(), left(), consent_given()]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    event = copy.deepcopy(draw(st.sampled_from(VALID)))
    event["id"] = draw(st.text(min_size=1, max_size=12))
    path = draw(st.sampled_from(_paths(event)))
    _set(event, path, draw(json_values))
    return dumps(event)


def nested(levels: int) -> bytes:
    return b'{"id":"n","v":' + b"[" * levels + b"]" * levels + b"}"


RECORDS = st.one_of(
    st.binary(max_size=300),
    json_values.map(dumps),
    mutated(),
    st.integers(1, 1_100).map(nested),
)


@pytest.fixture(scope="module")
def writer(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> LedgerWriter:
    url = f"sqlite:///{tmp_path_factory.mktemp('writer')}/ledger.db"
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    return LedgerWriter(ledger, policy, pseudonymiser(bytes(range(32))))


offsets = itertools.count()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(RECORDS, min_size=1, max_size=8))
def test_every_record_gets_exactly_one_outcome_of_its_own_and_the_chain_holds(
    writer: LedgerWriter, raws: list[bytes]
) -> None:
    records = [(raw, Position("sharing.referral", 0, next(offsets))) for raw in raws]
    with writer.ledger.engine.connect() as connection:
        before = entry_count(connection)
    outcomes = writer.write(records)
    own = [o for o in outcomes if o.kind != "reevaluation"]
    assert [o.position for o in own] == [p for _, p in records]
    recorded = sum(1 for o in outcomes if o.kind != "duplicate")
    with writer.ledger.engine.connect() as connection:
        assert entry_count(connection) == before + recorded
        assert verify(connection).ok


def test_a_batch_with_records_nested_past_the_bound_records_them_as_rejected(
    writer: LedgerWriter,
) -> None:
    raws: list[Any] = [nested(300), orjson.dumps(referral()), nested(1_024)]
    records = [(raw, Position("sharing.referral", 1, n)) for n, raw in enumerate(raws)]
    outcomes = writer.write(records)
    assert [o.decision.decision.value for o in outcomes] == ["rejected", "allowed", "rejected"]
    assert "nested more than 32 deep" in outcomes[0].decision.reasons[0]


def test_the_alert_of_a_large_census_breach_fits_the_broker(writer: LedgerWriter) -> None:
    """1,500 pupils relying on consent nobody gave, with the longest consent_ref: one
    reason per pupil in the ledger, a summary in the alert."""
    pupils = [{"upn": upn(n % 1_000, la=850 + n // 1_000)} for n in range(1_500)]
    event = census(pupils=pupils, lawful_basis="consent", consent_ref="C" * MAX_REF_LENGTH)
    (outcome,) = writer.write([(orjson.dumps(event), Position("sharing.census", 9, 0))])
    assert outcome.decision.decision.value == "breach"
    with writer.ledger.engine.connect() as connection:
        body = connection.exec_driver_sql(
            "SELECT body FROM alert_outbox WHERE seq = ?", (outcome.seq,)
        ).scalar_one()
    alert = orjson.loads(body)
    assert len(body) < MAX_ALERT_BYTES
    assert len(alert["pupil_keys"]) == 1_500
    assert any(r.endswith("; and 1,490 more like them") for r in alert["reasons"])


pupil_serials = itertools.count()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_each_schools_recorded_decisions_are_those_of_its_own_events_alone(
    writer: LedgerWriter, policy: Policy, data: st.DataObject
) -> None:
    """Two schools of a trust recording what they will about the same pupils, in batches
    of any size, facts and sharing events on their own topics: every decision the ledger
    holds of a school's event is the one its school's events alone give (contract
    Clarifications, 2026-12-06), and no re-evaluation is caused by another school's fact."""
    # Pupils of this example alone (LAs no other test here uses): the ledger is the module's.
    serial = next(pupil_serials)
    events = data.draw(trust_events(upn(serial, la=860), upn(serial, la=861)))
    records = [(dumps(e), Position(DEFAULT_TOPIC[e["type"]], 0, next(offsets))) for e in events]
    size = data.draw(st.integers(1, len(records)))
    outcomes = []
    for start in range(0, len(records), size):
        outcomes += writer.write(records[start : start + size])
    source = {e["id"]: e["source"] for e in events}
    assert all(source[o.reevaluated_by] == source[o.event_id] for o in outcomes if o.reevaluated_by)
    with writer.ledger.engine.connect() as connection:
        held = {e.event_id: e for e in Ledger.decisions_for(connection, list(source))}
    for school in (SCHOOL, OTHER_SCHOOL):
        own = [e for e in events if e["source"] == school]
        alone = final_decisions(policy, [dumps(e) for e in own])
        recorded = {
            e["id"]: (held[e["id"]].decision, held[e["id"]].rules, held[e["id"]].reasons)
            for e in own
        }
        assert recorded == {
            event_id: (d.decision.value, tuple(r.value for r in d.rules), tuple(d.reasons))
            for event_id, d in alone.items()
        }


def late_fact(pupil: str, kind: str, ref: str, day: int) -> dict[str, Any]:
    """A lifecycle fact about ``pupil`` timed on day ``day`` of July 2026, before the
    referral it re-decides."""
    time = f"2026-07-{day:02d}T09:00:00+01:00"
    if kind == "given":
        return consent_given(pupil, ref=ref, time=time)
    if kind == "withdrawn":
        return consent_withdrawn(pupil, ref=ref, time=time)
    return destroyed(pupil, categories=["medical"], time=time)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["given", "withdrawn", "destroyed"]),
            st.sampled_from(["C-1", "C-2"]),
            st.integers(1, 19),
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(["C-1", "C-2"]),
)
def test_a_late_fact_raises_an_alert_only_when_it_changes_the_decision_or_its_rules(
    writer: LedgerWriter, facts: list[tuple[str, str, int]], relied_on: str
) -> None:
    """One referral relying on consent, then late facts that may or may not change its
    decision (the contract records a re-evaluation either way): a re-evaluation that
    leaves the decision and its rules as they were raises no alert, and one that changes
    them raises exactly one, so one breach is not sixteen alerts on the DPO's desk."""
    pupil = upn(next(pupil_serials), la=860)
    sent = referral(
        pupils=[{"upn": pupil}],
        lawful_basis="consent",
        consent_ref=relied_on,
        special_condition="9.2.a",
        categories=["personal", "medical"],
        time="2026-07-20T09:00:00+01:00",
    )
    late = [late_fact(pupil, kind, ref, day) for kind, ref, day in facts]
    for batch in ([sent], late):  # the facts come after the referral is decided
        writer.write(
            [(dumps(e), Position(DEFAULT_TOPIC[e["type"]], 0, next(offsets))) for e in batch]
        )
    with writer.ledger.engine.connect() as connection:
        history = connection.exec_driver_sql(
            "SELECT seq, decision, rules FROM ledger_entry WHERE event_id = ? ORDER BY seq",
            (sent["id"],),
        ).all()
        alerted = set(
            connection.exec_driver_sql(
                "SELECT seq FROM alert_outbox WHERE seq BETWEEN ? AND ?",
                (history[0].seq, history[-1].seq),
            ).scalars()
        )
    assert len(history) == 1 + len(late)  # each late fact re-decides it, changed or not
    for before, after in itertools.pairwise(history):
        changed = (before.decision, before.rules) != (after.decision, after.rules)
        raises = changed and after.decision in {"breach", "review"}
        assert (after.seq in alerted) is raises, (before, after)
