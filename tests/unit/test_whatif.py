"""What-if's pure core: a recorded event replayed, two decisions compared, the changes
tallied, and a candidate pack compiled for each school's authority."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.engine import Engine
from pipeline.packs import load_schools, pack_text
from pipeline.policy.decide import verdict_of
from pipeline.policy.pack import Policy
from pipeline.policy.whatif import NotReplayable, Tally, candidate_packs, change_of, replayed
from pipeline.register import Register, normalise_upn
from pipeline.simulate import simulate
from schemas.decisions import ALLOWED, Decision, RuleId
from tests.factory import line, referral, upn

BREACH = Decision.from_violations({RuleId.CHANNEL_NOT_PERMITTED: ["channel 'post'"]})
REVIEW = Decision.from_violations({RuleId.RECIPIENT_UNKNOWN: ["recipient 'x'"]})
EVENT = {"event_id": "e-1", "recipient": "agency:school-nursing", "pupils": ["k"]}


def kept(event: dict[str, Any]) -> tuple[dict[str, Any], list[str], dict[str, str | None]]:
    """The event as the ledger keeps it (pupils by key, here the normalised UPN), its keys,
    and each pupil's date of birth."""
    pupils = event["data"]["pupils"]
    keys = [normalise_upn(p["upn"]) for p in pupils]
    body = {**event, "data": {**event["data"], "pupils": [{"upn": k} for k in keys]}}
    return body, keys, {k: p.get("dob") for k, p in zip(keys, pupils, strict=True)}


def test_replaying_every_event_of_a_year_with_the_pack_that_decided_it_changes_none(
    policy: Policy,
) -> None:
    engine = Engine(policy)
    for n, event in enumerate(simulate(300, 0.3, seed=2)):
        engine.process(orjson.dumps(event.event), n)
    sharing = [r for r in engine.recorded() if r.raw is not None]
    assert len(sharing) > 300
    for recorded in sharing:
        body, keys, born = kept(orjson.loads(recorded.raw or b""))
        again = replayed(body, keys, born, engine.register, policy)
        assert verdict_of(again) == verdict_of(recorded.decision), recorded.event_id


def test_an_event_of_an_erased_pupil_is_not_replayable(policy: Policy) -> None:
    body, keys, born = kept(referral(pupils=[{"upn": upn(1)}]))
    with pytest.raises(NotReplayable, match="erased"):
        replayed(body, keys, {}, Register(), policy)
    assert replayed(body, keys, born, Register(), policy) == ALLOWED


def test_a_payload_that_is_no_longer_an_event_is_not_replayable(policy: Policy) -> None:
    body, keys, born = kept(referral(pupils=[{"upn": upn(1)}]))
    del body["data"]["channel"]
    with pytest.raises(NotReplayable, match="no longer a valid event"):
        replayed(body, keys, born, Register(), policy)


def test_the_same_decision_and_rules_are_no_change_whatever_the_reasons_say() -> None:
    other_words = Decision.from_violations({RuleId.CHANNEL_NOT_PERMITTED: ["another reason"]})
    assert change_of(1, EVENT, BREACH, other_words) is None
    assert change_of(1, EVENT, ALLOWED, ALLOWED) is None


def test_a_change_names_the_rules_gained_and_lost() -> None:
    change = change_of(7, EVENT, BREACH, REVIEW)
    assert change is not None
    assert (change.gained, change.lost) == (["recipient.unknown"], ["channel.not_permitted"])
    said = change.as_dict()
    assert (said["seq"], said["from"]["decision"], said["to"]["decision"]) == (
        7,
        "breach",
        "review",
    )


def test_the_tally_counts_changes_by_rule_recipient_and_move() -> None:
    tally = Tally()
    tally.add(change_of(1, EVENT, ALLOWED, BREACH))
    tally.add(change_of(2, {**EVENT, "recipient": "la:850"}, ALLOWED, BREACH))
    tally.add(change_of(3, EVENT, BREACH, ALLOWED))
    tally.add(None)
    tally.not_replayed["a pupil of the event has been erased"] += 2
    summary = tally.summary()
    assert (summary["replayed"], summary["changed"], summary["unchanged"]) == (4, 3, 1)
    assert summary["not_replayed"] == 2
    assert summary["by_rule"] == [{"rule": "channel.not_permitted", "gained": 2, "lost": 1}]
    assert summary["by_recipient"] == [
        {"recipient": "agency:school-nursing", "changed": 2},
        {"recipient": "la:850", "changed": 1},
    ]
    assert summary["by_move"] == [
        {"from": "allowed", "to": "breach", "events": 2},
        {"from": "breach", "to": "allowed", "events": 1},
    ]


def test_a_candidate_is_compiled_for_each_schools_own_authority(tmp_path: Path) -> None:
    path = tmp_path / "schools.yaml"
    path.write_text(
        "schools:\n"
        '  - {urn: "116234", name: Westfields Junior School, la: 850}\n'
        '  - {urn: "135000", name: Northam Primary, la: 852}\n'
    )
    schools = load_schools(str(path))
    packs = candidate_packs(*pack_text(), schools)
    assert "la:850" in packs("116234").recipients
    assert "la:852" in packs("135000").recipients
    assert packs("135000").version == schools.policies["135000"].version


def test_a_candidate_with_problems_is_refused_when_it_is_given() -> None:
    from pipeline.policy.pack import PackError

    with pytest.raises(PackError):
        candidate_packs("pack: x\n", "x.yaml")


def test_an_event_decided_in_memory_replays_as_it_was_decided(policy: Policy) -> None:
    event = referral(pupils=[{"upn": upn(2)}], channel="post")
    (outcome,) = Engine(policy).process(line(event), 1)
    body, keys, born = kept(event)
    assert replayed(body, keys, born, Register(), policy) == outcome.decision


def test_an_adoption_for_one_school_replaces_that_schools_pack_alone(
    tmp_path: Path, policy: Policy
) -> None:
    from pipeline.policy.adopting import Adopted, in_force

    path = tmp_path / "schools.yaml"
    path.write_text(
        "schools:\n"
        '  - {urn: "116234", name: Westfields Junior School, la: 850}\n'
        '  - {urn: "135000", name: Northam Primary, la: 852}\n'
    )
    schools = load_schools(str(path))
    text = pack_text()[0].replace("deadline_school_days: 15", "deadline_school_days: 20")
    one = Adopted(10, "135000", text, "stricter.yaml")
    default, now = in_force(policy, schools, [one])
    assert now is not None and default is policy
    assert now.policies["135000"].transfer_deadline == 20
    assert "la:852" in now.policies["135000"].recipients
    assert now.policies["116234"] is schools.policies["116234"]
    every = Adopted(11, None, pack_text()[0], "england-schools")
    _, again = in_force(policy, schools, [one, every])
    assert again is not None
    assert again.policies["135000"].transfer_deadline == 15
    assert again.policies["135000"].version == schools.policies["135000"].version
