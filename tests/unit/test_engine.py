"""The engine: ids recorded once, late facts re-evaluating, order not mattering."""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engine import Engine
from pipeline.policy.decide import upns_of
from pipeline.policy.intake import read_event
from pipeline.policy.pack import Policy
from pipeline.register import check_upn
from pipeline.simulate import simulate
from schemas.decisions import Decision
from tests.factory import census, consent_given, consent_withdrawn, left, line, referral, transfer


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

        monkeypatch.setattr("pipeline.engine.decide", failing)
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
