"""The contract as published: JSON Schema files and the rule catalogue."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.policy.rules import POLICY_RULES
from schemas.decisions import RULE_VERDICT, RuleId
from schemas.events import EVENT_TYPES
from schemas.export import ALERT_SCHEMA, JSON_DIR, json_schemas, schema_text

TESTS = Path(__file__).resolve().parents[1]
GATE_RULES = {RuleId.EVENT_INVALID, RuleId.EVENT_ID_REUSED, RuleId.PUPIL_INVALID_UPN}


def catalogue(shared_dir: Path) -> dict[str, str]:
    text = (shared_dir / "contract" / "events-v1.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \| .* \| (\w+) \|$", text, re.MULTILINE)
    return dict(rows)


def test_the_committed_json_schemas_are_up_to_date() -> None:
    expected = json_schemas()
    committed = {p.name: p.read_text(encoding="utf-8") for p in JSON_DIR.glob("*.json")}
    assert set(committed) == set(expected), "run: sharing-audit schemas export schemas/json"
    for name, schema in expected.items():
        assert committed[name] == schema_text(schema), f"{name} is stale: run make schemas"


def test_there_is_one_schema_per_event_type_and_one_for_the_alert() -> None:
    assert sorted(json_schemas()) == sorted([*(f"{t}.json" for t in EVENT_TYPES), ALERT_SCHEMA])


def test_a_schema_requires_the_envelope_and_pins_the_type() -> None:
    schema = json.loads((JSON_DIR / "uk.school.pupil.transferred.v1.json").read_text())
    assert {"specversion", "id", "source", "type", "time", "data"} <= set(schema["required"])
    assert schema["properties"]["type"]["const"] == "uk.school.pupil.transferred.v1"
    assert schema["properties"]["time"]["format"] == "date-time"


def test_the_rule_ids_are_the_contracts_with_its_verdicts(shared_dir: Path) -> None:
    rows = catalogue(shared_dir)
    assert len(rows) == 17
    assert {r.value: v.value for r, v in RULE_VERDICT.items()} == rows


def test_every_policy_rule_has_exactly_one_implementation() -> None:
    assert set(POLICY_RULES) | GATE_RULES == set(RuleId)
    assert not set(POLICY_RULES) & GATE_RULES
    assert len(set(POLICY_RULES.values())) == len(POLICY_RULES)


def test_every_rule_has_its_own_tests() -> None:
    text = (TESTS / "unit" / "test_rules.py").read_text()
    classes = set(re.findall(r"^class Test(\w+)", text, re.MULTILINE))
    for rule in RuleId:
        name = "".join(part.title() for part in re.split(r"[._]", rule.value))
        assert name in classes, f"no Test{name} in test_rules.py for {rule.value}"
