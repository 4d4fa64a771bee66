"""The pupils an incident concerned, revealed on purpose: by a DPO alone, on the desk or at
the command line, each reveal a read in the ledger that names the incident; auditors and
admins see pseudonyms."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.incidents.desk import REVEAL_ACTION, incidents
from pipeline.ledger.reading.queries import Filters, entries
from pipeline.ledger.reading.reads import Requester
from pipeline.ledger.records.entry import Entry
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.pupils import finder
from pipeline.policy.pack import Policy
from pipeline.reports.sar import audited_sar
from pipeline.users import Role, add_user
from tests.factory import upn
from tests.integration.breaches import BORN, KEY, breach_desk, ledger_with_breaches

pytestmark = pytest.mark.integration
runner = CliRunner()
ENV = {"SHARING_AUDIT_PSEUDONYM_KEY": KEY.hex(), "COLUMNS": "200"}


@pytest.fixture
def ledger(sqlite_url: str, policy: Policy) -> Ledger:
    return ledger_with_breaches(sqlite_url, policy)


def consent_incident(ledger: Ledger) -> int:
    """The incident of pupils 1 and 2 (consent missing); pupil 3's is another."""
    with ledger.engine.connect() as connection:
        found = incidents(connection)
    return next(i for i, incident in found.items() if incident.cause.rule == "consent.missing")


def signed_in(ledger: Ledger, role: Role, name: str | None = None) -> TestClient:
    token = add_user(ledger, name or f"{role.value}-user", role)
    client = TestClient(breach_desk(ledger))
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    return client


def reveals(ledger: Ledger) -> list[Entry]:
    with ledger.engine.connect() as connection:
        found = entries(connection, Filters(kind="read"))
        return [e for e in found if (e.details or {}).get("action") == REVEAL_ACTION]


def head(ledger: Ledger) -> int:
    with ledger.engine.connect() as connection:
        return Ledger.head(connection)[0]


def test_a_dpo_who_reveals_an_incidents_pupils_sees_their_upn_birth_date_and_school(
    ledger: Ledger,
) -> None:
    incident_id = consent_incident(ledger)
    page = signed_in(ledger, Role.DPO).post(f"/desk/incidents/{incident_id}/pupils")
    assert page.status_code == 200
    assert upn(1) in page.text and upn(2) in page.text
    assert upn(3) not in page.text  # pupil 3 is the other incident's
    assert "9 Mar 2014" in page.text and "23 Nov 2014" in page.text
    assert "116234" in page.text


def test_each_reveal_is_a_read_naming_who_the_incident_and_how_many_pupils(
    ledger: Ledger,
) -> None:
    incident_id = consent_incident(ledger)
    signed_in(ledger, Role.DPO, "Dana").post(f"/desk/incidents/{incident_id}/pupils")
    (read,) = reveals(ledger)
    details = read.details or {}
    assert details["by"] == "Dana" and details["role"] == "dpo" and details["via"] == "page"
    assert details["incident"] == incident_id and details["pupils"] == 2
    assert read.recorded_at
    find = finder(ledger)
    assert set(read.pupil_keys) == {find(upn(1)), find(upn(2))}
    assert upn(1) not in json.dumps(details)  # the ledger names pupils by pseudonym


def test_a_reveal_is_among_the_accesses_of_each_revealed_pupils_subject_access_report(
    ledger: Ledger, policy: Policy
) -> None:
    incident_id = consent_incident(ledger)
    signed_in(ledger, Role.DPO).post(f"/desk/incidents/{incident_id}/pupils")
    auditor = Requester("auditor", "auditor", "api")
    report = audited_sar(ledger, auditor, finder(ledger)(upn(1)), policy)
    assert report is not None
    assert REVEAL_ACTION in [access["action"] for access in report["accesses"]]
    other = audited_sar(ledger, auditor, finder(ledger)(upn(3)), policy)
    assert other is not None
    assert REVEAL_ACTION not in [access["action"] for access in other["accesses"]]


def test_the_families_to_notify_are_a_csv_download_one_row_per_pupil(ledger: Ledger) -> None:
    incident_id = consent_incident(ledger)
    answer = signed_in(ledger, Role.DPO).post(f"/desk/incidents/{incident_id}/pupils.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert sorted((r["upn"], r["date_of_birth"]) for r in rows) == [
        (upn(1), BORN[1]),
        (upn(2), BORN[2]),
    ]
    assert {r["school_urn"] for r in rows} == {"116234"}
    assert {r["incident"] for r in rows} == {str(incident_id)}
    assert all(r["events"] == "referral, 21 Jul 2026" for r in rows)
    (read,) = reveals(ledger)
    assert (read.details or {})["format"] == "csv"


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.ADMIN])
@pytest.mark.parametrize("asked", ["pupils", "pupils.csv"])
def test_a_reveal_asked_by_an_auditor_or_admin_is_refused_and_records_nothing(
    ledger: Ledger, role: Role, asked: str
) -> None:
    incident_id = consent_incident(ledger)
    client = signed_in(ledger, role)
    before = head(ledger)
    answer = client.post(f"/desk/incidents/{incident_id}/{asked}")
    assert answer.status_code == 403
    assert "may not reveal the pupils" in answer.text
    assert "Breach desk" in answer.text  # in the desk's layout
    assert upn(1) not in answer.text
    assert head(ledger) == before


def test_an_auditors_incident_page_offers_no_reveal_and_names_no_pupil(ledger: Ledger) -> None:
    page = signed_in(ledger, Role.AUDITOR).get(f"/desk/incidents/{consent_incident(ledger)}")
    assert page.status_code == 200
    assert 'id="reveal"' not in page.text and 'id="families-csv"' not in page.text
    assert upn(1) not in page.text


def test_a_reveal_logs_who_and_which_incident_and_nothing_of_a_pupil(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.logging import configure as configure_logging

    incident_id = consent_incident(ledger)
    client = signed_in(ledger, Role.DPO, "Dana")
    configure_logging(level="INFO", json=True)
    try:
        client.post(f"/desk/incidents/{incident_id}/pupils")
        client.post(f"/desk/incidents/{incident_id}/pupils.csv")
        err = capsys.readouterr().err
    finally:
        configure_logging(level="WARNING")
    lines = [json.loads(line) for line in err.splitlines()]
    said = [line for line in lines if line["event"] == "pupils_revealed"]
    assert len(said) == 2 and said[0]["incident"] == incident_id and said[0]["by"] == "Dana"
    for secret in (upn(1), upn(2), BORN[1], BORN[2]):
        assert secret not in err


# -- at the command line ---------------------------------------------------------------------


def url_of(ledger: Ledger) -> str:
    return ledger.engine.url.render_as_string(hide_password=False)


def test_incidents_pupils_prints_the_pupils_and_records_the_read(ledger: Ledger) -> None:
    incident_id = consent_incident(ledger)
    args = ["incidents", "pupils", str(incident_id), "--db", url_of(ledger), "--by", "Dana"]
    shown = runner.invoke(app, args, env=ENV)
    assert shown.exit_code == 0, shown.output
    assert upn(1) in shown.stdout and upn(2) in shown.stdout and upn(3) not in shown.stdout
    assert "9 Mar 2014" in shown.stdout and "116234" in shown.stdout
    (read,) = reveals(ledger)
    details = read.details or {}
    assert (details["by"], details["via"], details["incident"]) == ("Dana", "cli", incident_id)
    assert f"entry {read.seq}" in shown.stdout


def test_incidents_pupils_csv_writes_the_families_to_notify_for_its_owner_alone(
    ledger: Ledger, tmp_path: Path
) -> None:
    incident_id = consent_incident(ledger)
    written = tmp_path / "families.csv"
    args = ["incidents", "pupils", str(incident_id), "--db", url_of(ledger), "--csv", str(written)]
    done = runner.invoke(app, args, env=ENV)
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(written.open(encoding="utf-8")))
    assert sorted(r["upn"] for r in rows) == sorted([upn(1), upn(2)])
    assert os.stat(written).st_mode & 0o777 == 0o600
    assert upn(1) not in done.stdout  # the file has them, not the terminal
    assert len(reveals(ledger)) == 1


def test_incidents_pupils_format_csv_writes_the_csv_to_standard_output(ledger: Ledger) -> None:
    incident_id = consent_incident(ledger)
    args = ["incidents", "pupils", str(incident_id), "--db", url_of(ledger), "--format", "csv"]
    done = runner.invoke(app, args, env=ENV)
    assert done.exit_code == 0, done.output
    rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(done.stdout)))
    assert {r["upn"] for r in rows} == {upn(1), upn(2)}


def test_incidents_pupils_of_another_schools_incident_is_no_incident_and_records_nothing(
    ledger: Ledger,
) -> None:
    incident_id = consent_incident(ledger)
    before = head(ledger)
    args = ["incidents", "pupils", str(incident_id), "--db", url_of(ledger), "--school", "135000"]
    refused = runner.invoke(app, args, env=ENV)
    assert refused.exit_code == 2
    assert f"no incident {incident_id} of school 135000" in refused.stderr
    assert upn(1) not in refused.output
    assert head(ledger) == before
