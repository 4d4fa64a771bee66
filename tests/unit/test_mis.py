"""The MIS SDK: events built and validated where they are made, and routed as the contract
says (topic by type; key by pupil, or by school for a census)."""

from __future__ import annotations

import orjson
import pytest

from pipeline.policy.intake import read_event
from pipeline.transport.mis import (
    InvalidEvent,
    MisClient,
    NoLogKey,
    NotRoutable,
    SchoolEvents,
    event_bytes,
    route,
)
from tests.factory import census, consent_withdrawn, referral, transfer, upn

SCHOOL = SchoolEvents("116234")


def test_a_census_goes_to_sharing_census_keyed_by_the_school() -> None:
    where = route(census(pupils=[{"upn": upn(1)}, {"upn": upn(2)}]))
    assert (where.topic, where.key) == ("sharing.census", b"116234")


def test_a_transfer_goes_to_sharing_transfer_keyed_by_the_pupil() -> None:
    where = route(transfer(pupils=[{"upn": upn(7)}]))
    assert (where.topic, where.key) == ("sharing.transfer", upn(7).encode())


def test_a_lifecycle_fact_goes_to_pupil_lifecycle_keyed_by_the_pupil() -> None:
    where = route(consent_withdrawn(pupil=upn(3)))
    assert (where.topic, where.key) == ("pupil.lifecycle", upn(3).encode())


def test_an_event_without_pupils_is_still_routed_without_a_key() -> None:
    event = referral()
    del event["data"]["pupils"]
    assert route(event).topic == "sharing.referral" and route(event).key is None


@pytest.mark.parametrize("value", [[], "text", {"type": "uk.school.unknown.v1"}, {"id": "x"}])
def test_a_record_without_a_known_type_cannot_be_routed(value: object) -> None:
    with pytest.raises(NotRoutable):
        route(value)


def test_a_built_referral_is_a_valid_contract_event() -> None:
    event = SCHOOL.referral(
        upn(1),
        recipient="agency:school-nursing",
        categories=["personal", "medical"],
        lawful_basis="public_task",
        special_condition="9.2.h",
        channel="secure_email",
    )
    reading = read_event(event_bytes(event))
    assert reading.problem is None
    assert orjson.loads(event_bytes(event))["source"] == "/schools/116234"


def test_built_lifecycle_facts_are_valid_contract_events() -> None:
    for event in (
        SCHOOL.left(upn(1), "2026-07-20", "school:116512"),
        SCHOOL.consent_given(upn(1), "C-1", ["agency:school-nursing"], ["medical"]),
        SCHOOL.consent_withdrawn(upn(1), "C-1"),
        SCHOOL.record_destroyed(upn(1)),
    ):
        assert read_event(event_bytes(event)).problem is None


def test_a_mistake_is_refused_naming_the_field_not_the_value() -> None:
    with pytest.raises(InvalidEvent, match=r"data\.lawful_basis") as refused:
        SCHOOL.transfer(
            upn(1),
            recipient="school:116512",
            categories=["personal"],
            lawful_basis="because",
            channel="s2s",
        )
    assert upn(1) not in str(refused.value)


def test_a_log_key_that_is_not_a_verifier_key_is_refused_before_connecting() -> None:
    with pytest.raises(NoLogKey, match="the log's verifier key is not one"):
        MisClient("127.0.0.1:1", school_urn="116234", log_vkey="example.org/log+00+AAAA")
