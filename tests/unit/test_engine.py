"""The engine: ids recorded once, late facts re-evaluating, order not mattering."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engine import Engine
from pipeline.policy.decide import upns_of
from pipeline.policy.intake import read_event
from pipeline.policy.pack import Policy
from pipeline.register import check_upn
from pipeline.simulate import simulate
from schemas.decisions import Decision
from tests.factory import (
    SCHOOL,
    census,
    consent_given,
    consent_withdrawn,
    left,
    line,
    referral,
    transfer,
)
from tests.factory import upn as upn_of
from tests.two_schools import CASES, ELSEWHERE, OTHER_SCHOOL, trust_events, verdict


def final_decisions(policy: Policy, events: list[bytes]) -> dict[str, Decision]:
    engine = Engine(policy)
    for position, raw in enumerate(events):
        engine.process(raw, position)
    return {r.event_id: r.decision for r in engine.recorded()}


def consent_referral(**kw: Any) -> dict[str, Any]:
    return referral(
        lawful_basis="consent",
        special_condition="9.2.a",
        consent_ref="C-1",
        categories=["personal", "medical"],
        **kw,
    )


class TestLateFacts:
    def test_a_late_withdrawal_re_evaluates_the_referral_after_it(self, policy: Policy) -> None:
        engine = Engine(policy)
        engine.process(line(consent_given()), 1)
        event = consent_referral(time="2026-07-21T09:30:00+01:00")
        (first,) = engine.process(line(event), 2)
        assert first.decision.decision == "allowed"
        late = consent_withdrawn(time="2026-07-20T09:00:00+01:00")
        own, again = engine.process(line(late), 3)
        assert own.decision.decision == "allowed"
        assert (again.kind, again.position, again.event_id) == ("reevaluation", 2, event["id"])
        assert again.reevaluated_by == late["id"]
        assert [r.value for r in again.decision.rules] == ["consent.withdrawn"]
        assert engine.current(event["id"]) == again.decision

    def test_a_fact_timed_after_the_event_re_evaluates_nothing(self, policy: Policy) -> None:
        engine = Engine(policy)
        engine.process(line(transfer(time="2026-07-21T09:30:00+01:00")), 1)
        outcomes = engine.process(line(left(time="2026-07-21T09:30:01+01:00")), 2)
        assert [o.kind for o in outcomes] == ["decision"]

    def test_a_fact_at_the_same_instant_in_another_offset_re_evaluates(
        self, policy: Policy
    ) -> None:
        engine = Engine(policy)
        engine.process(line(transfer(time="2026-07-21T09:30:00+01:00")), 1)
        outcomes = engine.process(line(left(time="2026-07-21T08:30:00Z")), 2)
        assert [o.kind for o in outcomes] == ["decision", "reevaluation"]
        assert outcomes[1].decision.decision == "allowed"

    def test_a_re_evaluation_is_reported_even_when_nothing_changes(self, policy: Policy) -> None:
        engine = Engine(policy)
        engine.process(line(census(time="2026-07-21T09:30:00+01:00")), 1)
        outcomes = engine.process(line(left(time="2026-07-01T09:30:00+01:00")), 2)
        assert [o.kind for o in outcomes] == ["decision", "reevaluation"]
        assert outcomes[1].decision.decision == "allowed"

    def test_another_pupils_fact_re_evaluates_nothing(self, policy: Policy) -> None:
        from tests.factory import upn

        engine = Engine(policy)
        engine.process(line(transfer()), 1)
        outcomes = engine.process(line(left(pupil=upn(2), time="2026-07-01T09:00:00Z")), 2)
        assert len(outcomes) == 1

    def test_several_affected_events_are_re_evaluated_in_arrival_order(
        self, policy: Policy
    ) -> None:
        engine = Engine(policy)
        later = transfer(time="2026-07-22T09:30:00+01:00")
        earlier = transfer(time="2026-07-21T09:30:00+01:00")
        engine.process(line(later), 1)
        engine.process(line(earlier), 2)
        outcomes = engine.process(line(left(time="2026-07-17T15:00:00+01:00")), 3)
        assert [o.position for o in outcomes[1:]] == [1, 2]

    def test_rejected_events_are_not_re_evaluated(self, policy: Policy) -> None:
        engine = Engine(policy)
        event = transfer()
        del event["data"]["channel"]
        engine.process(line(event), 1)
        assert len(engine.process(line(left(time="2026-07-01T09:00:00Z")), 2)) == 1


class TestDuplicates:
    def test_a_redelivery_reports_the_current_decision(self, policy: Policy) -> None:
        engine = Engine(policy)
        event = transfer()
        engine.process(line(event), 1)
        engine.process(line(left(time="2026-07-01T09:00:00Z")), 2)
        (dup,) = engine.process(line(event), 3)
        assert (dup.kind, dup.position, dup.decision.decision) == ("duplicate", 3, "allowed")

    def test_a_redelivered_fact_re_evaluates_nothing(self, policy: Policy) -> None:
        engine = Engine(policy)
        fact = left(time="2026-07-01T09:00:00Z")
        engine.process(line(transfer()), 1)
        engine.process(line(fact), 2)
        assert [o.kind for o in engine.process(line(fact), 3)] == ["duplicate"]

    def test_a_rejected_event_redelivered_is_a_duplicate(self, policy: Policy) -> None:
        engine = Engine(policy)
        event = transfer()
        del event["data"]["channel"]
        engine.process(line(event), 1)
        (dup,) = engine.process(line(event), 2)
        assert (dup.kind, dup.decision.decision) == ("duplicate", "rejected")

    def test_an_event_without_a_usable_id_is_decided_each_time(self, policy: Policy) -> None:
        engine = Engine(policy)
        event = {**census(), "id": ""}
        kinds = [engine.process(line(event), i)[0].kind for i in (1, 2)]
        assert kinds == ["decision", "decision"]

    def test_an_id_ending_in_a_newline_is_not_usable(self, policy: Policy) -> None:
        # Not printable ASCII, though a regular expression's "$" matches before it.
        engine = Engine(policy)
        event = {**census(), "id": "census-1\n"}
        outcomes = [engine.process(line(event), i)[0] for i in (1, 2)]
        assert [(o.kind, o.recorded) for o in outcomes] == [("decision", False)] * 2


def test_final_decisions_do_not_depend_on_arrival_order(policy: Policy) -> None:
    lines = [ln for ln in simulate(600, violation_rate=0.15, seed=7) if not ln.redelivery]
    events = [orjson.dumps(ln.event) for ln in lines]
    expected = final_decisions(policy, events)
    for seed in range(3):
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        assert final_decisions(policy, shuffled) == expected


def test_final_decisions_are_the_simulators_true_decisions(policy: Policy) -> None:
    lines = simulate(800, violation_rate=0.2, seed=11)
    engine = Engine(policy)
    final: dict[int, Decision] = {}
    for position, ln in enumerate(lines):
        for outcome in engine.process(orjson.dumps(ln.event), position):
            final[outcome.position] = outcome.decision
    wrong = [
        (i, ln.expected, final[i])
        for i, ln in enumerate(lines)
        if (final[i].decision, tuple(final[i].rules)) != (ln.expected.decision, ln.expected.rules)
    ]
    assert not wrong
    assert {ln.expected.decision for ln in lines} == {"allowed", "review", "breach", "rejected"}


def test_pupils_keyed_by_the_caller_are_decided_as_the_engine_keys_them(policy: Policy) -> None:
    """The ledger writer checks and keys a batch's pupils once and hands the keys on; an
    event with an invalid UPN it hands on unkeyed, for the engine to reject."""
    lines = simulate(600, violation_rate=0.2, seed=13)
    alone, keyed = Engine(policy), Engine(policy)
    for position, ln in enumerate(lines):
        raw = orjson.dumps(ln.event)
        reading = read_event(raw)
        keys = None
        if reading.event is not None:
            normal = [check_upn(upn)[0] for upn in upns_of(reading.event)]
            if all(normal):
                keys = tuple(keyed.pupil_key(upn) for upn in normal if upn)
        assert [o.decision for o in keyed.process(raw, position, reading, keys)] == [
            o.decision for o in alone.process(raw, position)
        ]


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False))
def test_any_order_of_facts_and_referrals_gives_the_same_final_decisions(
    policy: Policy, rnd: random.Random
) -> None:
    from tests.factory import upn

    events = []
    for pupil in range(3):
        u = upn(pupil)
        events += [
            consent_given(pupil=u, time="2026-07-01T09:00:00+01:00"),
            consent_withdrawn(pupil=u, time=f"2026-07-{10 + pupil}T09:00:00+01:00"),
            left(pupil=u, destination="school:116512", time="2026-07-05T09:00:00Z"),
            consent_referral(pupils=[{"upn": u}], time="2026-07-08T09:00:00+01:00"),
            consent_referral(pupils=[{"upn": u}], time="2026-07-12T09:00:00+01:00"),
            transfer(pupils=[{"upn": u}], time="2026-07-06T09:00:00+01:00"),
            transfer(pupils=[{"upn": u}], time="2026-07-02T09:00:00+01:00"),
        ]
    raw = [line(e) for e in events]
    expected = final_decisions(policy, raw)
    rnd.shuffle(raw)
    assert final_decisions(policy, raw) == expected


class TestAnEventTheEngineFailsOn:
    def test_is_rejected_naming_the_internal_error_and_the_next_is_decided(
        self, policy: Policy, monkeypatch: Any
    ) -> None:
        from pipeline.policy.decide import decide as real

        poison = referral()

        def failing(event: Any, register: Any, pack: Any, keys: Any = None) -> Decision:
            if event.id == poison["id"]:
                raise ValueError("a bug the event exposes")
            return real(event, register, pack, keys)

        monkeypatch.setattr("pipeline.policy.decide.decide", failing)
        engine = Engine(policy)
        (failed,) = engine.process(line(poison), 1)
        (after,) = engine.process(line(referral()), 2)
        assert (failed.decision.decision.value, failed.decision.rules) == (
            "rejected",
            ("event.invalid",),
        )
        assert "internal error ValueError" in failed.decision.reasons[0]
        assert engine.current(poison["id"]) == failed.decision
        assert after.decision.decision.value == "allowed"


class TestFactsBelongToTheSchoolThatRecordedThem:
    """Contract Clarifications 2026-12-06: another school's facts never decide a
    school's events, whatever the order they arrive in."""

    @staticmethod
    def run(policy: Policy, events: list[dict[str, Any]]) -> tuple[Engine, list[Any]]:
        engine = Engine(policy)
        outcomes = [o for n, e in enumerate(events) for o in engine.process(line(e), n)]
        return engine, outcomes

    @staticmethod
    def decided(engine: Engine, event: dict[str, Any]) -> Decision:
        decision = engine.current(event["id"])
        assert decision is not None
        return decision

    @pytest.mark.parametrize("kind", sorted(CASES))
    def test_another_schools_fact_before_the_event_does_not_decide_it(
        self, policy: Policy, kind: str
    ) -> None:
        case = CASES[kind]()
        engine, _ = self.run(policy, case.arrivals(late=False))
        decision = self.decided(engine, case.event)
        assert verdict(decision) == case.alone
        assert not any(case.others_fact["id"] in reason for reason in decision.reasons)

    @pytest.mark.parametrize("kind", sorted(CASES))
    def test_another_schools_late_fact_re_decides_nothing_of_this_school(
        self, policy: Policy, kind: str
    ) -> None:
        case = CASES[kind]()
        engine, outcomes = self.run(policy, case.arrivals(late=True))
        assert [o.kind for o in outcomes if o.event_id == case.event["id"]] == ["decision"]
        assert not any(o.reevaluated_by == case.others_fact["id"] for o in outcomes)
        decision = self.decided(engine, case.event)
        assert verdict(decision) == case.alone

    @pytest.mark.parametrize("kind", sorted(CASES))
    @pytest.mark.parametrize("late", [False, True], ids=["before", "late"])
    def test_the_same_fact_recorded_by_the_school_itself_decides_its_event(
        self, policy: Policy, kind: str, late: bool
    ) -> None:
        """The control: each case's fact does matter, when it is the school's own."""
        case = CASES[kind]()
        own = case.as_own()
        engine, outcomes = self.run(policy, case.arrivals(late, fact=own))
        decision = self.decided(engine, case.event)
        assert verdict(decision) == case.decides
        assert any(o.reevaluated_by == own["id"] for o in outcomes) is late

    @pytest.mark.xfail(
        strict=True,
        reason="events are keyed by id alone, deployment-wide: another school's event "
        "under the same id (CloudEvents makes only source + id unique) turns this school's "
        "breach into event.id_reused; keying by (source, id) reaches the ledger and receipts",
    )
    def test_another_schools_event_under_the_same_id_does_not_decide_this_schools_event(
        self, policy: Policy
    ) -> None:
        """Two MISs of a trust numbering their events alike, or one that sends another
        school's ids first: A's breach must still be decided as A's breach."""
        b_event = referral(id="evt-1", source=OTHER_SCHOOL, categories=["personal"])
        a_breach = referral(
            id="evt-1", lawful_basis="consent", special_condition="9.2.a", categories=["medical"]
        )
        _, outcomes = self.run(policy, [b_event, a_breach])
        assert verdict(outcomes[-1].decision) == ("breach", ["consent.missing"])

    def test_a_pupil_who_moved_between_two_schools_has_two_sets_of_facts(
        self, policy: Policy
    ) -> None:
        """Left A for B, then left B: each school's transfer is judged by its own leaving."""
        a_left = left(destination="school:116235", time="2026-07-17T15:00:00+01:00")
        b_left = left(
            left_on="2026-09-18",
            destination=ELSEWHERE,
            source=OTHER_SCHOOL,
            time="2026-09-18T15:00:00+01:00",
        )
        a_sends = transfer(recipient="school:116235", time="2026-09-21T09:30:00+01:00")
        b_sends = transfer(recipient=ELSEWHERE, source=OTHER_SCHOOL, time="2026-09-21T09:30:00Z")
        engine, _ = self.run(policy, [a_left, b_left, a_sends, b_sends])
        a_decision, b_decision = engine.current(a_sends["id"]), engine.current(b_sends["id"])
        assert a_decision is not None and b_decision is not None
        assert verdict(a_decision) == ("review", ["transfer.late"])
        assert verdict(b_decision) == ("allowed", [])


@settings(max_examples=60, deadline=None)
@given(trust_events(upn_of(1), upn_of(2)))
def test_each_schools_decisions_are_those_of_its_own_events_alone(
    policy: Policy, events: list[dict[str, Any]]
) -> None:
    engine = Engine(policy)
    outcomes = [o for n, e in enumerate(events) for o in engine.process(line(e), n)]
    for school in (SCHOOL, OTHER_SCHOOL):
        own = [line(e) for e in events if e["source"] == school]
        mixed = {e["id"]: engine.current(e["id"]) for e in events if e["source"] == school}
        assert mixed == final_decisions(policy, own)
    source = {e["id"]: e["source"] for e in events}
    assert all(source[o.reevaluated_by] == source[o.event_id] for o in outcomes if o.reevaluated_by)
