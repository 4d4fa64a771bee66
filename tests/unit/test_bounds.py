"""The contract's bounds: what one record may hold, and the reason when it holds more.

A bound exists so that no single record can stop the pipeline downstream (canonical JSON
that cannot be written, an alert over the broker's limit, a header that cannot be sent),
while real data, such as the census of a large secondary school, stays valid.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.policy.intake import read_event, shape_of
from schemas.events import MAX_DEPTH, MAX_NAMES, MAX_PUPILS
from schemas.export import json_schemas
from tests.factory import census, consent_given, left, line, referral, upn


def deep(levels: int) -> bytes:
    """An event-shaped object with an unknown attribute nested ``levels`` deep in all."""
    inner = b"[" * (levels - 1) + b"]" * (levels - 1)
    return b'{"id":"deep-1","type":"uk.school.pupil.referred.v1","extra":' + inner + b"}"


def problem_of(event: dict[str, Any]) -> str | None:
    return read_event(line(event)).problem


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 255, 300, 1_024])
def test_a_record_nested_past_the_bound_is_invalid_naming_the_depth(levels: int) -> None:
    reading = read_event(deep(levels))
    assert reading.problem == f"event: arrays and objects nested more than {MAX_DEPTH} deep"
    assert reading.key == "deep-1"


def test_a_record_nested_to_the_bound_is_read() -> None:
    assert "nested" not in (read_event(deep(MAX_DEPTH)).problem or "")


def test_nesting_past_the_parsers_own_limit_is_invalid_json_not_a_crash() -> None:
    reading = read_event(b"[" * 5_000 + b"]" * 5_000)
    assert reading.problem is not None and reading.problem.startswith("not valid JSON")


def test_depth_is_counted_in_objects_and_arrays_alike() -> None:
    assert shape_of({"a": [{"b": []}]}, 4) == (False, 2)
    assert shape_of({"a": [{"b": []}]}, 3)[0]


@pytest.mark.parametrize(
    "recipient",
    [
        "agency:x\r\nBcc: someone@example.org",
        "agency:[/x]",
        "Agency:Nurse",
        "agency nurse",
        "agency:\x1b[31m",
        "a" * 100_000,
        "",
    ],
)
def test_a_recipient_outside_the_pattern_is_invalid(recipient: str) -> None:
    problem = problem_of(referral(recipient=recipient))
    assert problem is not None and problem.startswith("data.recipient: must be 1 to 64")


def test_a_consent_given_for_a_recipient_outside_the_pattern_is_invalid() -> None:
    problem = problem_of(consent_given(recipients=["agency:x\n"]))
    assert problem is not None and "data.recipients[0]" in problem


def test_a_census_of_three_thousand_pupils_is_valid() -> None:
    pupils = [{"upn": upn(n), "dob": "2012-05-01"} for n in range(3_000)]
    assert problem_of(census(pupils=pupils)) is None


def test_a_census_naming_more_pupils_than_the_bound_is_invalid() -> None:
    pupils = [{"upn": upn(1)}] * (MAX_PUPILS + 1)
    assert problem_of(census(pupils=pupils)) == (
        f"data.pupils: List should have at most {MAX_PUPILS} items after validation, "
        f"not {MAX_PUPILS + 1}"
    )


def test_a_long_consent_ref_is_invalid() -> None:
    problem = problem_of(referral(lawful_basis="consent", consent_ref="C" * 600))
    assert problem is not None and problem.startswith("data.consent_ref:")


def test_too_many_categories_are_invalid() -> None:
    problem = problem_of(referral(categories=[f"c{n}" for n in range(MAX_NAMES + 1)]))
    assert problem is not None and problem.startswith("data.categories:")


def test_a_long_upn_string_is_invalid_and_a_short_wrong_one_is_left_to_the_upn_rule() -> None:
    assert problem_of(left(pupil="X" * 1_000)) is not None
    assert problem_of(left(pupil="X" * 20)) is None


@pytest.mark.parametrize(
    "time", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00", "1899-12-31T23:59:59Z"]
)
def test_a_time_outside_the_contracts_years_is_invalid(time: str) -> None:
    assert problem_of(referral(time=time)) == "time: must fall between the years 1900 and 2999"


def test_a_date_outside_the_contracts_years_is_invalid() -> None:
    problem = problem_of(left(left_on="0001-01-01"))
    assert problem == "data.left_on: must fall between the years 1900 and 2999"


def test_the_published_schemas_carry_the_bounds() -> None:
    schema = json.dumps(json_schemas()["uk.school.census.submitted.v1.json"])
    assert f'"maxItems": {MAX_PUPILS}' in schema
    assert '"pattern": "^[a-z0-9:._-]{1,64}$"' in schema
    assert f'"x-maxDepth": {MAX_DEPTH}' in schema


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "a", "id": "b"}',
        b'{"id": "a", "data": {"recipient": "x", "recipient": "dfe"}}',
        b'{"data": {"pupils": [{"upn": "A", "upn": "B"}]}}',
        b'{"id" :"a", "id" :"b"}',
    ],
)
def test_a_key_given_twice_in_one_object_is_invalid_naming_it(raw: bytes) -> None:
    """Parsers differ on which value wins: the event would mean what its reader chose."""
    problem = read_event(raw).problem
    assert problem is not None and "appears twice in one object" in problem


@pytest.mark.parametrize("space", [b"  ", b"\t", b"\r", b"\n", b" \r\n\t ", b"\n" * 40])
def test_a_key_given_twice_is_invalid_whatever_whitespace_stands_before_its_colon(
    space: bytes,
) -> None:
    """JSON allows space, tab, CR and LF between a key and its colon: a recipient given
    twice so is as ambiguous as one given twice without (which one was it shared with?)."""
    given = line(referral())
    raw = given.replace(b'"recipient":', b'"recipient"' + space + b':"dfe","recipient":')
    assert raw != given and read_event(given).problem is None
    problem = read_event(raw).problem
    assert problem == "event: the key 'recipient' appears twice in one object"


@given(
    before=st.text(" \t\r\n", max_size=3),
    after=st.text(" \t\r\n", max_size=3),
    key=st.sampled_from(["id", "type", "recipient", "upn"]),
)
def test_a_repeated_key_is_found_however_the_record_is_spaced(
    before: str, after: str, key: str
) -> None:
    event = referral()
    text = json.dumps(event, separators=("," + after, before + ":" + after))
    raw = text.replace(f'"{key}"', f'"{key}"{before}:{after}"x",{after}"{key}"', 1).encode()
    assert read_event(raw).problem == f"event: the key {key!r} appears twice in one object"


def test_text_that_looks_like_a_key_inside_a_value_is_not_a_duplicate() -> None:
    event = referral(purpose='"recipient": "dfe", "recipient": "la:850"')
    reading = read_event(line(event))
    assert reading.problem is None and reading.event is not None
