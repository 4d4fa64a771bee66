"""A deployment's register of schools (pipeline.policy.schools, pipeline.packs): each
school's events decided by its own pack, compiled for its own local authority; an event
from a school outside the register rejected, naming the school."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.cli.worker import notice_targets
from pipeline.engine import Engine, Outcome
from pipeline.packs import load_pack, load_schools, pack_text
from pipeline.policy.pack import PackError, parse_pack
from pipeline.policy.schools import Controller, Schools
from pipeline.settings import Settings
from tests.factory import line, referral, upn

runner = CliRunner()
WESTFIELDS, NORTHAM = "/schools/116234", "/schools/135000"  # Hampshire (850), Southampton (852)


def register(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "schools.yaml"
    path.write_text(
        "schools:\n"
        '  - {urn: "116234", name: Westfields Junior School, la: 850}\n'
        '  - {urn: "135000", name: Northam Primary, la: 852, pack: england-schools}\n' + extra
    )
    return path


@pytest.fixture
def schools(tmp_path: Path) -> Schools:
    return load_schools(str(register(tmp_path)))


def decided(schools: Schools | None, *events: dict[str, Any]) -> list[Outcome]:
    engine = Engine(load_pack(), schools=schools)
    return [engine.process(line(event), n)[0] for n, event in enumerate(events)]


def referral_from(source: str, la: str) -> dict[str, Any]:
    return referral(recipient=f"la:{la}", source=source, categories=["personal", "attendance"])


def test_each_school_may_refer_to_its_own_la_and_not_to_the_others(schools: Schools) -> None:
    outcomes = decided(
        schools,
        referral_from(WESTFIELDS, "850"),
        referral_from(NORTHAM, "852"),
        referral_from(WESTFIELDS, "852"),
        referral_from(NORTHAM, "850"),
    )
    verdicts = [(o.decision.decision, o.decision.rules) for o in outcomes]
    assert verdicts[:2] == [("allowed", ()), ("allowed", ())]
    assert verdicts[2:] == [("review", ("recipient.unknown",))] * 2


def test_each_decision_names_the_version_of_its_schools_pack(schools: Schools) -> None:
    ours, theirs = decided(schools, referral_from(WESTFIELDS, "850"), referral_from(NORTHAM, "852"))
    assert ours.policy is not None and theirs.policy is not None
    assert ours.policy.version != theirs.policy.version
    assert ours.policy.version == schools.policies["116234"].version


def test_an_event_from_a_school_outside_the_register_is_rejected_naming_it(
    schools: Schools,
) -> None:
    (outcome,) = decided(schools, referral_from("/schools/999999", "850"))
    assert (outcome.decision.decision, outcome.decision.rules) == ("rejected", ("event.invalid",))
    assert (
        "/schools/999999" in outcome.decision.reasons[0]
        and "register" in outcome.decision.reasons[0]
    )


def test_without_a_register_one_pack_decides_every_school_with_its_own_la() -> None:
    outcomes = decided(None, referral_from(NORTHAM, "850"), referral_from(NORTHAM, "852"))
    assert [o.decision.decision for o in outcomes] == ["allowed", "review"]


def test_the_default_pack_is_written_for_any_la_not_one() -> None:
    text, _ = pack_text()
    assert "la:{LA}" in text and '"la:850"' not in text
    southampton = parse_pack(text, "england-schools", la=852)
    assert "la:852" in southampton.recipients and "la:850" not in southampton.recipients


def test_a_pack_for_any_la_without_one_given_is_refused() -> None:
    text, _ = pack_text()
    with pytest.raises(PackError, match="give the school's LA code"):
        parse_pack(text.replace("\nla: 850\n", "\n"), "mine.yaml")


def test_a_schools_own_pack_is_found_beside_the_register(tmp_path: Path) -> None:
    text, _ = pack_text()
    (tmp_path / "strict.yaml").write_text(text.replace("pack: england-schools", "pack: strict"))
    path = register(tmp_path, '  - {urn: "100001", name: Other, la: 850, pack: strict.yaml}\n')
    schools = load_schools(str(path))
    assert schools.policies["100001"].name == "strict"
    assert schools.policies["116234"].name == "england-schools"


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ('  - {urn: "116234", name: Again, la: 850}\n', "schools[2].urn: 116234 is also"),
        ('  - {urn: "12345", name: Short, la: 850}\n', "schools[2].urn"),
        ('  - {urn: "100002", name: Nowhere, la: 9999}\n', "schools[2].la"),
        ('  - {urn: "100003", name: Typo, la: 850, pakc: x}\n', "schools[2].pakc"),
        ('  - {urn: "100004", name: Missing, la: 850, pack: gone.yaml}\n', "gone.yaml"),
    ],
)
def test_a_register_with_a_mistake_is_refused_naming_it(
    tmp_path: Path, extra: str, says: str
) -> None:
    with pytest.raises(PackError) as refused:
        load_schools(str(register(tmp_path, extra)))
    assert says in str(refused.value)


def test_check_decides_by_the_register_and_the_ledger_names_each_schools_pack(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    sent = [referral_from(WESTFIELDS, "850"), referral_from(NORTHAM, "852")]
    events.write_bytes(b"\n".join(line(e) for e in sent) + b"\n")
    url = f"sqlite:///{tmp_path}/ledger.db"
    env = {
        "SHARING_AUDIT_SCHOOLS": str(register(tmp_path)),
        "SHARING_AUDIT_PSEUDONYM_KEY": "ab" * 32,
    }
    done = runner.invoke(app, ["check", str(events), "--db", url, "-f", "jsonl"], env=env)
    assert done.exit_code == 0, done.output
    assert [orjson.loads(x)["decision"] for x in done.stdout.splitlines()] == ["allowed"] * 2
    query = runner.invoke(app, ["ledger", "query", "--db", url, "--format", "jsonl"], env=env)
    versions = {
        orjson.loads(x)["school"]: orjson.loads(x)["policy_version"]
        for x in query.stdout.splitlines()
    }
    schools = load_schools(env["SHARING_AUDIT_SCHOOLS"])
    assert versions == {urn: schools.policies[urn].version for urn in ("116234", "135000")}


def test_a_register_that_cannot_be_read_ends_the_command_with_one_line(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(line(referral(pupils=[{"upn": upn(1)}])) + b"\n")
    done = runner.invoke(app, ["check", str(events), "--schools", str(tmp_path / "none.yaml")])
    assert done.exit_code == 2 and "none.yaml: cannot be read" in done.stderr
    assert "Traceback" not in done.output


def test_a_schools_own_notice_targets_serve_its_incidents_alone(tmp_path: Path) -> None:
    extra = (
        '  - {urn: "100005", name: Own, la: 850, webhooks: ["https://own.example/hook"], '
        'emails: ["dpo@own.example"]}\n'
    )
    schools = load_schools(str(register(tmp_path, extra)))
    config = Settings(
        webhook_urls=["https://trust.example/hook"], webhook_secret="s", smtp_host="mail"
    )
    targets = notice_targets(config, schools)
    assert {(t.address, t.school) for t in targets} == {
        ("https://trust.example/hook", None),
        ("https://own.example/hook", "100005"),
        ("dpo@own.example", "100005"),
    }


def test_a_notice_target_that_is_not_a_url_or_address_is_refused(tmp_path: Path) -> None:
    extra = '  - {urn: "100006", name: Bad, la: 850, webhooks: ["not a url"]}\n'
    with pytest.raises(PackError, match=r"schools\[2\]\.webhooks"):
        load_schools(str(register(tmp_path, extra)))


# -- the school as a subject-access report names it to a parent (issue 31) ---------------


def test_a_schools_address_and_dpo_contact_are_read_from_the_register(tmp_path: Path) -> None:
    extra = (
        '  - urn: "100007"\n'
        "    name: Abbotswood Primary\n"
        "    la: 850\n"
        "    address: |\n"
        "      Abbotswood Lane\n"
        "      Romsey SO51 0AA\n"
        '    dpo_contact: "School DPO, 023 8012 3456"\n'
    )
    schools = load_schools(str(register(tmp_path, extra)))
    assert schools.controllers["100007"] == Controller(
        "100007",
        "Abbotswood Primary",
        "Abbotswood Lane\nRomsey SO51 0AA",
        "School DPO, 023 8012 3456",
    )
    assert schools.controllers["116234"].missing() == [
        "its address",
        "its Data Protection Officer's contact",
    ]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ('dpo_contact: "ring the office"', "schools[2].dpo_contact: give an email address"),
        ('dpo_contact: "dpo@abbots.example\\tx"', "schools[2].dpo_contact: must be one line"),
        ('address: "  "', "schools[2].address: is blank"),
        ('name: "Two\\nlines"', "schools[2].name: must be one line"),
        ("adress: Abbotswood Lane", "schools[2].adress: Extra inputs are not permitted"),
    ],
)
def test_a_controller_field_given_wrongly_is_refused_naming_it(
    tmp_path: Path, fields: str, says: str
) -> None:
    extra = f'  - {{urn: "100008", name: Abbotswood, la: 850, {fields}}}\n'
    with pytest.raises(PackError) as refused:
        load_schools(str(register(tmp_path, extra)))
    assert says in str(refused.value)


def test_a_deployment_of_one_school_names_it_in_its_settings() -> None:
    config = Settings(school_name="Westfields Junior School", school_dpo_contact="dpo@w.example")
    assert config.school() == Controller(None, "Westfields Junior School", None, "dpo@w.example")
    assert Settings().school() is None


def test_a_school_setting_given_wrongly_is_refused_naming_the_variable() -> None:
    with pytest.raises(PackError) as refused:
        Settings(school_name="Westfields", school_dpo_contact="ask at reception").school()
    assert "SHARING_AUDIT_SCHOOL_DPO_CONTACT: give an email address" in str(refused.value)
    assert "ask at reception" not in str(refused.value)


def test_a_report_given_a_wrong_school_setting_ends_with_one_line(tmp_path: Path) -> None:
    env = {"SHARING_AUDIT_SCHOOL_DPO_CONTACT": "ask at reception"}
    url = f"sqlite:///{tmp_path}/ledger.db"
    done = runner.invoke(app, ["report", "sar", "--pupil", upn(1), "--db", url], env=env)
    assert done.exit_code == 2, done.output
    assert "SHARING_AUDIT_SCHOOL_DPO_CONTACT: give an email address" in done.stderr
    assert "Traceback" not in done.output
