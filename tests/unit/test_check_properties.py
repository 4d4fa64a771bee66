"""Whatever it is given, ``check`` decides every line exactly once and never crashes."""

from __future__ import annotations

import copy
import io
import json
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.checking import Result, check_lines, in_memory, numbered_lines
from pipeline.engine import Engine
from pipeline.policy.pack import Policy
from tests.factory import census, consent_given, destroyed, left, referral, transfer, upn

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)

VALID = [
    census(),
    transfer(),
    referral(),
    left(),
    consent_given(),
    destroyed(),
    census(pupils=[{"upn": upn(7), "dob": "2016-01-01"}]),
]
REQUIRED_ENVELOPE = ["specversion", "id", "source", "type", "time", "data"]
REQUIRED_SHARING = ["recipient", "pupils", "categories", "lawful_basis", "channel"]


def dumps(value: Any) -> bytes:
    """JSON as another producer might write it: any integer size, escaped non-ASCII."""
    return json.dumps(value).encode()


def run(policy: Policy, payload: bytes) -> tuple[list[int], list[Result]]:
    lines = list(numbered_lines(io.BytesIO(payload)))
    results: list[Result] = []
    check_lines(iter(lines), in_memory(Engine(policy)), results.append)
    return [n for n, _ in lines], results


def assert_one_decision_per_line(numbers: list[int], results: list[Result]) -> None:
    own = [r["line"] for r in results if "reevaluated_by" not in r]
    assert own == numbers
    for r in results:
        assert r["decision"] in {"allowed", "review", "breach", "rejected"}
        assert len(r["rules"]) == len(r["reasons"]) == len(set(r["rules"]))
        assert r["rules"] == sorted(r["rules"])
        if r["rules"]:
            assert all(isinstance(x, str) and x for x in r["reasons"])


@SETTINGS
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_arbitrary_bytes_get_one_decision_per_line(policy: Policy, chunks: list[bytes]) -> None:
    payload = b"\n".join(c.replace(b"\n", b"") for c in chunks)
    numbers, results = run(policy, payload)
    assert_one_decision_per_line(numbers, results)


@SETTINGS
@given(st.lists(json_values, min_size=1, max_size=6))
def test_arbitrary_json_is_rejected_as_invalid(policy: Policy, values: list[Any]) -> None:
    payload = b"\n".join(dumps(v) for v in values)
    numbers, results = run(policy, payload)
    assert_one_decision_per_line(numbers, results)
    for r in results:
        assert (r["decision"], r["rules"]) == ("rejected", ["event.invalid"])
        assert r["reasons"][0]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(event: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        event = event[key]
    event[path[-1]] = value


@SETTINGS
@given(st.data())
def test_mutated_valid_events_get_one_decision_per_line(
    policy: Policy, data: st.DataObject
) -> None:
    events = []
    for _ in range(data.draw(st.integers(1, 5))):
        event = copy.deepcopy(data.draw(st.sampled_from(VALID)))
        event["id"] = data.draw(st.text(min_size=1, max_size=20))
        path = data.draw(st.sampled_from(_paths(event)))
        _set(event, path, data.draw(json_values))
        events.append(event)
    numbers, results = run(policy, b"\n".join(dumps(e) for e in events))
    assert_one_decision_per_line(numbers, results)


@SETTINGS
@given(st.sampled_from(VALID), st.data())
def test_a_missing_required_field_is_rejected_with_a_reason_naming_it(
    policy: Policy, valid: dict[str, Any], data: st.DataObject
) -> None:
    event = copy.deepcopy(valid)
    is_sharing = "recipient" in event["data"]
    choices = REQUIRED_ENVELOPE + ([f"data.{k}" for k in REQUIRED_SHARING] if is_sharing else [])
    field = data.draw(st.sampled_from(choices))
    if field.startswith("data."):
        del event["data"][field[5:]]
    else:
        del event[field]
    _, (result,) = run(policy, dumps(event))
    assert (result["decision"], result["rules"]) == ("rejected", ["event.invalid"])
    assert field in result["reasons"][0]


@SETTINGS
@given(
    st.sampled_from(VALID),
    st.sampled_from(["time", "source", "specversion", "data"]),
    st.one_of(st.integers(), st.lists(st.text(), max_size=2), st.booleans(), st.none()),
)
def test_a_mistyped_envelope_attribute_is_rejected(
    policy: Policy, valid: dict[str, Any], field: str, value: Any
) -> None:
    event = {**valid, field: value}
    _, (result,) = run(policy, dumps(event))
    assert result["rules"] == ["event.invalid"]
    assert field in result["reasons"][0]


def test_valid_events_pass_the_intake(policy: Policy) -> None:
    _, results = run(policy, b"\n".join(orjson.dumps(e) for e in VALID))
    assert "rejected" not in Counter(r["decision"] for r in results)
