"""Two packs' rules side by side (``policy diff``): each place added, removed or changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.packs import pack_text
from pipeline.policy.diff import pack_differences
from pipeline.policy.pack import Policy, parse_pack

runner = CliRunner()


def edited(change: Any) -> Policy:
    document = yaml.safe_load(pack_text()[0])
    change(document)
    return parse_pack(yaml.safe_dump(document), "edited.yaml")


def test_a_pack_differs_from_itself_nowhere(policy: Policy) -> None:
    assert pack_differences(policy, edited(lambda _: None)) == []


def test_a_recipient_removed_is_each_of_its_rules_removed(policy: Policy) -> None:
    def no_nursing(pack: dict[str, Any]) -> None:
        del pack["recipients"]["agency:school-nursing"]

    found = pack_differences(policy, edited(no_nursing))
    assert {d.change for d in found} == {"removed"}
    assert {(d.section, d.item) for d in found} == {
        ("recipients", "agency:school-nursing"),
        ("permissions", "agency:school-nursing referral"),
    }
    lawful = next(d for d in found if d.field == "lawful_bases")
    assert (lawful.old, lawful.new) == (["consent", "public_task", "vital_interests"], None)


def test_a_category_added_and_a_retention_changed_are_said_as_such(policy: Policy) -> None:
    def changed(pack: dict[str, Any]) -> None:
        pack["categories"]["photographs"] = {"covers": "photographs"}
        pack["recipients"]["dfe"]["permissions"]["census"]["categories"].append("photographs")
        pack["retention"]["default"]["years"] += 1

    found = {(d.section, d.item, d.field): d for d in pack_differences(policy, edited(changed))}
    assert found["categories", "photographs", "covers"].change == "added"
    census = found["permissions", "dfe census", "categories"]
    assert census.change == "changed" and "photographs" in census.new
    assert found["retention", "default", "period"].change == "changed"


def test_policy_diff_prints_a_row_per_difference(tmp_path: Path) -> None:
    document = yaml.safe_load(pack_text()[0])
    document["transfers"]["deadline_school_days"] = 20
    path = tmp_path / "candidate.yaml"
    path.write_text(yaml.safe_dump(document))
    done = runner.invoke(app, ["policy", "diff", "england-schools", str(path), "-f", "jsonl"])
    assert done.exit_code == 0, done.stderr
    rows = [orjson.loads(text) for text in done.stdout.splitlines()]
    assert rows == [
        {
            "section": "settings",
            "item": "transfers",
            "field": "deadline_school_days",
            "change": "changed",
            "old": 15,
            "new": 20,
        }
    ]


def test_policy_diff_of_a_pack_that_is_not_there_exits_in_one_line(tmp_path: Path) -> None:
    done = runner.invoke(app, ["policy", "diff", "england-schools", str(tmp_path / "none.yaml")])
    assert done.exit_code != 0
    assert len(done.stderr.strip().splitlines()) == 1
    assert "none.yaml" in done.stderr
