"""``sharing-audit check`` and its siblings, as a vendor or DPO runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from tests.factory import (
    census,
    consent_given,
    consent_withdrawn,
    left,
    line,
    referral,
    transfer,
    upn,
)
from tests.two_schools import CASES

runner = CliRunner()


def write(tmp_path: Path, *events: Any, raw: list[bytes] | None = None) -> Path:
    path = tmp_path / "events.jsonl"
    lines = [e if isinstance(e, bytes) else line(e) for e in events] + (raw or [])
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def check(*args: str, input: bytes | None = None) -> tuple[int, list[dict[str, Any]], str]:
    result = runner.invoke(app, ["check", *args], input=input)
    out = [json.loads(x) for x in result.stdout.splitlines() if x.strip()]
    return result.exit_code, out, result.stderr


class TestJsonLines:
    def test_each_line_prints_the_contracts_fields(self, tmp_path: Path) -> None:
        event = transfer(recipient="school:116999")
        code, out, _ = check(str(write(tmp_path, left(), event)), "--format", "jsonl")
        assert code == 0
        assert out[1] == {
            "line": 2,
            "event_id": event["id"],
            "type": "uk.school.pupil.transferred.v1",
            "decision": "breach",
            "rules": ["transfer.wrong_destination"],
            "reasons": ["sent to school:116999 but the recorded destination is school:116512"],
        }

    def test_a_line_that_is_not_an_object_has_null_id_and_type(self, tmp_path: Path) -> None:
        code, out, _ = check(str(write(tmp_path, raw=[b"[1, 2]", b"{oops"])), "-f", "jsonl")
        assert code == 0
        assert [(o["line"], o["event_id"], o["type"], o["rules"]) for o in out] == [
            (1, None, None, ["event.invalid"]),
            (2, None, None, ["event.invalid"]),
        ]

    def test_an_invalid_id_and_type_are_printed_as_given(self, tmp_path: Path) -> None:
        _, out, _ = check(str(write(tmp_path, {"id": 42, "type": ["x"]})), "-f", "jsonl")
        assert (out[0]["event_id"], out[0]["type"], out[0]["decision"]) == (42, ["x"], "rejected")

    def test_a_redelivery_prints_its_line_duplicate_and_the_current_decision(
        self, tmp_path: Path
    ) -> None:
        event = transfer()
        fact = left(time="2026-07-01T09:00:00Z")
        _, out, _ = check(str(write(tmp_path, event, fact, event)), "-f", "jsonl")
        assert out[-1]["line"] == 3
        assert out[-1]["duplicate"] is True
        assert out[-1]["decision"] == "allowed"

    def test_a_re_evaluation_follows_the_late_facts_own_object(self, tmp_path: Path) -> None:
        given = consent_given()
        event = referral(
            lawful_basis="consent",
            special_condition="9.2.a",
            consent_ref="C-1",
            categories=["personal", "medical"],
            time="2026-07-21T09:30:00+01:00",
        )
        late = consent_withdrawn(time="2026-07-21T08:00:00+01:00")
        other = census(pupils=[{"upn": upn(2)}])
        _, out, _ = check(str(write(tmp_path, given, event, other, late)), "-f", "jsonl")
        assert [o["line"] for o in out] == [1, 2, 3, 4, 2]
        assert out[4]["event_id"] == event["id"]
        assert out[4]["reevaluated_by"] == late["id"]
        assert out[4]["rules"] == ["consent.withdrawn"]

    def test_an_id_reused_rejection_leaves_the_first_decision(self, tmp_path: Path) -> None:
        first = census()
        second = {**census(categories=["attendance"]), "id": first["id"]}
        third = first
        _, out, _ = check(str(write(tmp_path, first, second, third)), "-f", "jsonl")
        assert out[1]["rules"] == ["event.id_reused"]
        assert out[2]["decision"] == "allowed" and out[2]["duplicate"] is True

    def test_standard_input_is_read_for_a_dash(self) -> None:
        code, out, _ = check("-", "-f", "jsonl", input=line(census()) + b"\n")
        assert code == 0 and out[0]["decision"] == "allowed"

    def test_blank_lines_get_no_decision_but_keep_line_numbers(self, tmp_path: Path) -> None:
        path = tmp_path / "e.jsonl"
        path.write_bytes(b"\n" + line(census()) + b"\r\n\n   \n" + line(census()))
        _, out, _ = check(str(path), "-f", "jsonl")
        assert [o["line"] for o in out] == [2, 5]

    def test_a_line_that_is_not_utf8_is_rejected_and_the_next_decided(self, tmp_path: Path) -> None:
        _, out, _ = check(str(write(tmp_path, b'{"id": "\xff"}', census())), "-f", "jsonl")
        assert out[0]["reasons"] == ["not valid UTF-8"]
        assert out[1]["decision"] == "allowed"

    def test_another_policy_pack_can_be_named(self, tmp_path: Path) -> None:
        from pipeline.packs import pack_text

        text, _ = pack_text()
        pack = tmp_path / "strict.yaml"
        pack.write_text(text.replace("channels: [collect]", "channels: [portal]"))
        _, out, _ = check(str(write(tmp_path, census())), "--policy", str(pack), "-f", "jsonl")
        assert out[0]["rules"] == ["channel.not_permitted"]


class TestATrustsSchools:
    """Contract Clarifications 2026-12-06, as a vendor sees it in ``check``'s output."""

    @staticmethod
    def trust(tmp_path: Path) -> Path:
        path = tmp_path / "schools.yaml"
        path.write_text(
            "schools:\n"
            '  - {urn: "116234", name: Westfields Junior School, la: 850}\n'
            '  - {urn: "116235", name: Westfields Infant School, la: 850}\n'
        )
        return path

    @pytest.mark.parametrize("kind", sorted(CASES))
    @pytest.mark.parametrize("late", [False, True], ids=["before", "late"])
    def test_another_schools_fact_neither_decides_nor_re_decides_an_event(
        self, tmp_path: Path, kind: str, late: bool
    ) -> None:
        case = CASES[kind]()
        events = case.arrivals(late)
        schools = str(self.trust(tmp_path))
        code, out, _ = check(str(write(tmp_path, *events)), "--schools", schools, "-f", "jsonl")
        assert code == 0
        assert [o["event_id"] for o in out] == [e["id"] for e in events]
        (decided,) = [o for o in out if o["event_id"] == case.event["id"]]
        assert (decided["decision"], decided["rules"]) == case.alone
        assert case.others_fact["id"] not in json.dumps(decided)


class TestExitStatus:
    def test_a_missing_file_exits_2_with_one_line(self, tmp_path: Path) -> None:
        code, out, err = check(str(tmp_path / "nope.jsonl"))
        assert code == 2 and out == []
        assert err.strip().count("\n") == 0
        assert "nope.jsonl" in err and "No such file" in err

    def test_a_directory_exits_2(self, tmp_path: Path) -> None:
        code, _, err = check(str(tmp_path))
        assert code == 2 and "directory" in err

    def test_a_broken_pack_exits_2_with_one_line(self, tmp_path: Path) -> None:
        pack = tmp_path / "p.yaml"
        pack.write_text("pack: x\n")
        code, _, err = check(str(write(tmp_path, census())), "--policy", str(pack))
        assert code == 2
        assert err.strip().count("\n") == 0
        assert err.startswith("sharing-audit: policy pack ") and "categories: missing" in err

    def test_every_decision_exits_0(self, tmp_path: Path) -> None:
        code, out, _ = check(str(write(tmp_path, census(channel="email"), raw=[b"nope"])))
        assert code == 0 and len(out) == 2


class TestTable:
    def test_a_table_shows_decisions_reasons_and_a_summary(self, tmp_path: Path) -> None:
        path = write(tmp_path, census(), census(channel="email"), raw=[b"nope"])
        result = runner.invoke(app, ["check", str(path), "--format", "table"])
        assert result.exit_code == 0
        text = result.stdout
        assert "channel.not_permitted: channel 'email' is not allowed" in text
        assert "not valid JSON" in text
        summary = text[text.index("decisions") :]
        for word, count in (("allowed", 1), ("breach", 1), ("rejected", 1), ("total", 3)):
            assert any(word in row and str(count) in row for row in summary.splitlines())


class TestOtherCommands:
    def test_schemas_export_writes_one_file_per_type_and_the_alert(self, tmp_path: Path) -> None:
        result = runner.invoke(app, ["schemas", "export", str(tmp_path / "out")])
        assert result.exit_code == 0
        assert len(list((tmp_path / "out").glob("*.json"))) == 7 + 1

    def test_policy_validate_accepts_the_shipped_pack(self, tmp_path: Path) -> None:
        from pipeline.packs import pack_text

        path = tmp_path / "mine.yaml"
        path.write_text(pack_text()[0])
        result = runner.invoke(app, ["policy", "validate", str(path)])
        assert result.exit_code == 0 and "valid pack 'england-schools'" in result.stdout

    def test_policy_validate_lists_each_problem_with_its_place(self, tmp_path: Path) -> None:
        from pipeline.packs import pack_text

        path = tmp_path / "mine.yaml"
        path.write_text(
            pack_text()[0]
            .replace("channels: [collect]", "channels: [fax]", 1)
            .replace("deadline_school_days: 15", "deadline_school_days: -1")
        )
        result = runner.invoke(app, ["policy", "validate", str(path)])
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 2
        assert all(ln.startswith(f"{path}: ") for ln in lines)
        assert "recipients.dfe.permissions.census.channels[0]" in lines[0]
        assert "transfers.deadline_school_days" in lines[1]

    def test_policy_validate_of_a_missing_file_exits_2(self, tmp_path: Path) -> None:
        result = runner.invoke(app, ["policy", "validate", str(tmp_path / "x.yaml")])
        assert result.exit_code == 2

    def test_policy_show_prints_the_pack(self) -> None:
        result = runner.invoke(app, ["policy", "show"], env={"COLUMNS": "160"})
        assert result.exit_code == 0
        for text in ("england-schools", "agency:educational-psychology", "31 years", "s537A"):
            assert text in result.stdout


@pytest.mark.integration
def test_the_installed_command_runs_in_a_pipe(tmp_path: Path) -> None:
    """The console script itself, reading a pipe and writing JSON Lines to one."""
    path = write(tmp_path, census(), census(channel="email"))
    exe = Path(sys.executable).parent / "sharing-audit"
    proc = subprocess.run(
        [str(exe), "check", "-"], input=path.read_bytes(), capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    decisions = [json.loads(x)["decision"] for x in proc.stdout.splitlines()]
    assert decisions == ["allowed", "breach"]


def test_the_policy_pack_can_come_from_the_environment(tmp_path: Path) -> None:
    from pipeline.packs import pack_text

    pack = tmp_path / "strict.yaml"
    pack.write_text(pack_text()[0].replace("channels: [collect]", "channels: [portal]"))
    path = write(tmp_path, census())
    result = runner.invoke(
        app, ["check", str(path), "-f", "jsonl"], env={"SHARING_AUDIT_POLICY": str(pack)}
    )
    assert json.loads(result.stdout.splitlines()[0])["rules"] == ["channel.not_permitted"]


@pytest.mark.parametrize("text", ["? [a, b]\n: 1\n", "a:\n  ? {x: 1}\n  : 2\n", "a: [unclosed\n"])
def test_policy_validate_of_yaml_it_cannot_read_exits_2_with_one_line(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["policy", "validate", str(path)])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [message] = result.stderr.strip().splitlines()
    assert message.startswith(f"{path}: line ")
