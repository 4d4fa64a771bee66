"""Under a register of schools, what is served and reported explains each school's entries
with its own pack: the desk says an entry was decided by its school's current pack, the
record of processing compares each school's sharing with what its own pack permits, and
the operator's commands take one school."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.api.app import create_api
from pipeline.cli.main import app
from pipeline.ledger.storage.store import Ledger
from pipeline.packs import load_pack, load_schools
from pipeline.policy.schools import Schools
from pipeline.pseudonym import pseudonymiser
from pipeline.users import Role, add_user
from tests.factory import line, referral, upn
from tests.unit.test_schools import NORTHAM, WESTFIELDS, register

pytestmark = pytest.mark.integration
runner = CliRunner()
ENV = {"SHARING_AUDIT_PSEUDONYM_KEY": "ab" * 32}


@pytest.fixture
def registered(tmp_path: Path) -> tuple[Ledger, Schools, str]:
    """Each school referring a pupil to its own LA, decided under the register."""
    path = register(tmp_path)
    events = tmp_path / "events.jsonl"
    sent = [
        referral(recipient="la:850", source=WESTFIELDS, pupils=[{"upn": upn(1)}]),
        referral(recipient="la:852", source=NORTHAM, pupils=[{"upn": upn(2)}]),
    ]
    events.write_bytes(b"\n".join(line(e) for e in sent) + b"\n")
    url = f"sqlite:///{tmp_path}/ledger.db"
    env = {**ENV, "SHARING_AUDIT_SCHOOLS": str(path)}
    done = runner.invoke(app, ["check", str(events), "--db", url], env=env)
    assert done.exit_code == 0, done.output
    return Ledger.open(url), load_schools(str(path)), str(path)


def client_of(ledger: Ledger, schools: Schools | None) -> tuple[TestClient, dict[str, str]]:
    pseudonym = pseudonymiser(bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"]))
    client = TestClient(
        create_api(ledger, policy=load_pack(), pseudonym=pseudonym, schools=schools)
    )
    token = add_user(ledger, f"dpo-{id(client)}", Role.DPO)
    return client, {"Authorization": f"Bearer {token}"}


def test_each_entry_is_explained_as_decided_by_its_schools_current_pack(
    registered: tuple[Ledger, Schools, str],
) -> None:
    ledger, schools, _ = registered
    client, headers = client_of(ledger, schools)
    current = [client.get(f"/entries/{seq}", headers=headers).json() for seq in (1, 2)]
    assert [e["decided_by_current_policy"] for e in current] == [True, True]
    without, headers = client_of(ledger, None)  # one pack for all: Northam's is not it
    northam = without.get("/entries/2", headers=headers).json()
    assert northam["decided_by_current_policy"] is False


def test_the_record_of_processing_compares_each_school_with_its_own_pack(
    registered: tuple[Ledger, Schools, str],
) -> None:
    ledger, schools, _ = registered
    client, headers = client_of(ledger, schools)
    rows = client.get("/reports/ropa", headers=headers).json()["rows"]
    assert [(r["school"], r["recipient"], r["differences"]) for r in rows] == [
        ("116234", "la:850", []),
        ("135000", "la:852", []),
    ]
    without, headers = client_of(ledger, None)
    rows = without.get("/reports/ropa", headers=headers).json()["rows"]
    assert any(r["differences"] for r in rows)  # la:852 is no recipient of LA 850's pack


def test_the_operators_query_and_queue_take_one_school(
    registered: tuple[Ledger, Schools, str],
) -> None:
    ledger, _, _ = registered
    url = ledger.engine.url.render_as_string(hide_password=False)
    query = runner.invoke(
        app, ["ledger", "query", "--db", url, "--school", "135000", "-f", "jsonl"], env=ENV
    )
    assert query.exit_code == 0, query.output
    assert {orjson.loads(x)["school"] for x in query.stdout.splitlines()} == {"135000"}
    queue = runner.invoke(app, ["incidents", "list", "--db", url, "--school", "13"], env=ENV)
    assert queue.exit_code == 2 and "six digits" in queue.stderr


def test_a_user_is_given_only_schools_of_the_register(
    registered: tuple[Ledger, Schools, str],
) -> None:
    ledger, _, path = registered
    url = ledger.engine.url.render_as_string(hide_password=False)
    args = ["users", "add", "sam", "--role", "dpo", "--db", url, "--schools", path]
    refused = runner.invoke(app, [*args, "--school", "999999"], env=ENV)
    assert refused.exit_code == 2 and "not a school of the register" in refused.stderr
    made = runner.invoke(app, [*args, "--school", "135000"], env=ENV)
    assert made.exit_code == 0, made.output


def test_the_desks_subject_access_report_names_the_pupils_school_as_the_register_gives_it(
    registered: tuple[Ledger, Schools, str], tmp_path: Path
) -> None:
    ledger, _, _ = registered
    detailed = tmp_path / "detailed" / "schools.yaml"
    detailed.parent.mkdir()
    detailed.write_text(
        "schools:\n"
        '  - urn: "116234"\n'
        "    name: Westfields Junior School\n"
        "    la: 850\n"
        '    address: "Westfields Road, Eastleigh SO50 1AA"\n'
        '    dpo_contact: "dpo@westfields.example"\n'
        '  - {urn: "135000", name: Northam Primary, la: 852, dpo_contact: "023 8022 1234"}\n'
    )
    client, _ = client_of(ledger, load_schools(str(detailed)))
    token = add_user(ledger, "dana", Role.DPO)
    client.post("/desk/signin", data={"token": token})
    page = client.post("/desk/sar", data={"upn": upn(1), "format": "html"})
    assert page.status_code == 200, page.text
    letterhead = page.text.split('id="controller"', 1)[1].split("</header>", 1)[0]
    assert "Westfields Junior School" in letterhead and "(URN 116234)" in letterhead
    assert "Westfields Road, Eastleigh SO50 1AA" in letterhead
    assert "dpo@westfields.example" in letterhead
    assert "Northam" not in page.text  # the pupil's school alone
    assert "ico.org.uk/make-a-complaint" in page.text
