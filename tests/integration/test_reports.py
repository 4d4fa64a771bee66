"""Subject-access reports and the record of processing, checked against the event file
they were built from (computed here independently of the engine and the ledger)."""

from __future__ import annotations

import csv
import io
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from pipeline.api.app import create_api
from pipeline.ledger.reading.queries import Filters, entries
from pipeline.policy.pack import Policy
from pipeline.users import Role, add_user
from schemas.events import CENSUS, SHARING_KIND, SHARING_TYPES
from tests.integration.test_audit_api import details_of
from tests.integration.year import KEY, Year, ledger_of_year, pseudonym

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Year:
    path = tmp_path_factory.mktemp("year") / "ledger.db"
    return ledger_of_year(f"sqlite:///{path}", policy)


@pytest.fixture(scope="module")
def dpo(year: Year) -> str:
    return add_user(year.ledger, "the-dpo", Role.DPO)


@pytest.fixture(scope="module")
def client(year: Year, policy: Policy) -> TestClient:
    return TestClient(create_api(year.ledger, policy=policy, pseudonym=pseudonym))


def first_deliveries(year: Year) -> list[Any]:
    """Each event once, as first delivered (a redelivery is the same event again)."""
    seen: set[str] = set()
    out = []
    for line in year.lines:
        if line.event["id"] not in seen:
            seen.add(line.event["id"])
            out.append(line)
    return out


def naming(line: Any, upn: str) -> bool:
    data = line.event["data"]
    return data.get("upn") == upn or upn in [p.get("upn") for p in data.get("pupils", [])]


def sampled_pupils(year: Year, n: int = 25) -> list[str]:
    return random.Random(11).sample(year.upns(), n)


def sar(client: TestClient, token: str, upn: str, form: str = "json") -> Any:
    response = client.post(
        "/pupils/sar",
        json={"upn": upn, "format": form},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    return response.json() if form == "json" else response.text


def test_a_subject_access_report_holds_exactly_the_pupils_events_as_the_file_has_them(
    client: TestClient, dpo: str, year: Year
) -> None:
    for upn in sampled_pupils(year):
        report = sar(client, dpo, upn)
        expected = {line.event["id"]: line for line in first_deliveries(year) if naming(line, upn)}
        shown = {
            item["event_id"]: (section, item)
            for section in ("disclosures", "lifecycle", "rejected")
            for item in report[section]
        }
        assert shown.keys() == expected.keys(), upn
        for event_id, line in expected.items():
            section, item = shown[event_id]
            data = line.event["data"]
            assert item["decision"] == line.expected.decision, (upn, event_id)
            if line.expected.decision == "rejected":
                assert section == "rejected"
            elif line.event["type"] in SHARING_TYPES:
                assert section == "disclosures"
                assert item["recipient"] == data["recipient"]
                assert set(item["categories"]) == set(data["categories"])
                assert item["lawful_basis"] == data["lawful_basis"]
                assert item["channel"] == data["channel"]
                assert item["special_condition"] == data.get("special_condition")
                assert item["gateway"] or item["recipient_name"] is None
            else:
                assert section == "lifecycle"
        assert report["pupil"]["upn"] == upn


def test_a_subject_access_report_covers_every_entry_that_names_the_pupil(
    client: TestClient, dpo: str, year: Year
) -> None:
    upn = sampled_pupils(year)[0]
    report = sar(client, dpo, upn)
    with year.ledger.engine.connect() as connection:
        naming_entries = [
            e.seq
            for e in entries(connection, Filters(pupil_key=year.pseudonym(upn)))
            if e.seq <= report["as_of"]
        ]
    assert report["entries"] == naming_entries


@pytest.mark.parametrize("form", ["json", "csv", "html"])
def test_no_other_pupils_identifier_or_pseudonym_appears_in_a_report(
    client: TestClient, dpo: str, year: Year, form: str
) -> None:
    everyone = year.upns()
    for upn in sampled_pupils(year, 10):
        text = sar(client, dpo, upn, form)
        text = text if isinstance(text, str) else orjson.dumps(text).decode()
        assert upn in text
        others = [u for u in everyone if u != upn]
        assert not [u for u in others if u in text]
        assert not [u for u in others if year.pseudonym(u) in text]


def test_a_census_shows_only_the_requesters_place_in_its_reasons(
    client: TestClient, dpo: str, year: Year
) -> None:
    flagged = [
        pupil["upn"]
        for line in year.lines
        if line.event["type"] == CENSUS and line.expected.rules
        for pupil in line.event["data"]["pupils"]
    ]
    assert flagged, "the year has no census with reasons to show"
    shown = 0
    for upn in random.Random(5).sample(flagged, min(10, len(flagged))):
        for item in sar(client, dpo, upn)["disclosures"]:
            shown += item["event_type"] == CENSUS and bool(item["reasons"])
            assert "pupils[" not in " ".join(item["reasons"])
    assert shown


def test_the_record_of_processing_counts_what_the_file_shared(
    client: TestClient, dpo: str, year: Year, policy: Policy
) -> None:
    expected: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"allowed": 0, "review": 0, "breach": 0, "pupils": set()}
    )
    for line in first_deliveries(year):
        event, decision = line.event, line.expected.decision
        if event["type"] not in SHARING_TYPES or decision == "rejected":
            continue
        data = event["data"]
        key = policy.recipient_key(data["recipient"]) or data["recipient"]
        group = expected[(key, event["type"])]
        group[decision] += 1
        group["pupils"].update(year.pseudonym(p["upn"]) for p in data["pupils"])
    response = client.get("/reports/ropa", headers={"Authorization": f"Bearer {dpo}"})
    rows = {(r["recipient"], r["event_type"]): r for r in response.json()["rows"]}
    decided = {k: r for k, r in rows.items() if r["events"] > r["rejected"]}
    assert decided.keys() == expected.keys()
    for key, group in expected.items():
        row = rows[key]
        assert (row["allowed"], row["review"], row["breach"]) == (
            group["allowed"],
            group["review"],
            group["breach"],
        ), key
        assert row["pupils"] == len(group["pupils"]), key


def test_the_record_of_processing_shows_where_practice_goes_beyond_the_policy(
    client: TestClient, dpo: str, year: Year, policy: Policy
) -> None:
    beyond: dict[tuple[str, str], set[str]] = defaultdict(set)
    for line in first_deliveries(year):
        event = line.event
        if event["type"] not in SHARING_KIND or line.expected.decision == "rejected":
            continue
        recipient = policy.recipient_key(event["data"]["recipient"])
        permission = policy.permission_for(recipient, SHARING_KIND[event["type"]])
        if recipient is not None and permission is not None:
            extra = set(event["data"]["categories"]) - permission.categories
            beyond[(recipient, event["type"])].update(extra & policy.categories)
    response = client.get("/reports/ropa", headers={"Authorization": f"Bearer {dpo}"})
    rows = {(r["recipient"], r["event_type"]): r for r in response.json()["rows"]}
    assert any(beyond.values()), "the simulated year shares some category it may not"
    for where, extra in beyond.items():
        said = [d for d in rows[where]["differences"] if d.startswith("categories")]
        if extra:
            assert said == [f"categories the policy does not permit: {', '.join(sorted(extra))}"]
        else:
            assert said == []


def test_a_report_for_a_period_counts_only_events_in_it(
    client: TestClient, dpo: str, year: Year
) -> None:
    whole = client.get("/reports/ropa", headers={"Authorization": f"Bearer {dpo}"}).json()
    autumn = client.get(
        "/reports/ropa",
        params={"since": "2025-09-01", "until": "2026-01-01"},
        headers={"Authorization": f"Bearer {dpo}"},
    ).json()
    assert 0 < autumn["totals"]["events"] < whole["totals"]["events"]
    assert autumn["period"]["since"] == "2025-08-31T23:00:00.000000Z"  # midnight in England


def run_cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = {
        "SHARING_AUDIT_DATABASE_URL": db,
        "SHARING_AUDIT_PSEUDONYM_KEY": KEY.hex(),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "sharing-audit"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_the_command_line_sar_is_the_same_report_and_is_recorded(
    client: TestClient, dpo: str, year: Year
) -> None:
    upn = sampled_pupils(year)[1]
    url = year.ledger.engine.url.render_as_string(hide_password=False)
    result = run_cli("report", "sar", "--pupil", upn, "--format", "json", db=url)
    assert result.returncode == 0, result.stderr
    from_cli = orjson.loads(result.stdout)
    from_api = sar(client, dpo, upn)
    for report in (from_cli, from_api):
        for varying in ("as_of", "read_seq", "generated_at", "accesses", "entries", "summary"):
            report.pop(varying)
    assert from_cli == from_api
    with year.ledger.engine.connect() as connection:
        last = list(entries(connection, Filters(kind="read")))[-1]
    assert details_of(last)["via"] == "api"  # the API's report came after the CLI's
    assert any(
        details_of(e)["via"] == "cli" and details_of(e)["action"] == "sar"
        for e in entries(year.ledger.engine.connect(), Filters(kind="read"))
    )


@pytest.mark.parametrize("form", ["csv", "html", "json"])
def test_the_command_line_ropa_writes_each_format(year: Year, tmp_path: Path, form: str) -> None:
    url = year.ledger.engine.url.render_as_string(hide_password=False)
    out = tmp_path / f"ropa.{form}"
    result = run_cli(
        "report",
        "ropa",
        "--since",
        "2025-09-01",
        "--until",
        "2026-09-01",
        "--format",
        form,
        "-o",
        str(out),
        db=url,
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    if form == "csv":
        header = next(csv.reader(io.StringIO(text)))
        assert header[:4] == ["school", "recipient", "recipient_name", "event_type"]
    elif form == "html":
        assert '<table id="ropa">' in text
    else:
        assert orjson.loads(text)["rows"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "sar", "--pupil", "NOT-A-UPN"], "--pupil: not a valid UPN"),
        (["report", "ropa", "--since", "autumn"], "--since 'autumn': give a date"),
    ],
)
def test_report_mistakes_get_one_line_and_no_traceback(
    year: Year, args: list[str], message: str
) -> None:
    url = year.ledger.engine.url.render_as_string(hide_password=False)
    result = run_cli(*args, db=url)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "action"),
    [
        (["ledger", "query", "--category", "medical", "--format", "jsonl"], "export"),
        (["ledger", "query", "--pupil", "{upn}", "--format", "csv"], "export"),
        (["report", "sar", "--pupil", "{upn}"], "sar"),
        (["report", "ropa", "--since", "2025-09-01"], "ropa"),
    ],
)
def test_every_command_line_read_leaves_a_read_entry(
    year: Year, args: list[str], action: str
) -> None:
    url = year.ledger.engine.url.render_as_string(hide_password=False)
    upn = sampled_pupils(year)[2]
    result = run_cli(*(a.format(upn=upn) for a in args), db=url)
    assert result.returncode == 0, result.stderr
    with year.ledger.engine.connect() as connection:
        last = list(entries(connection, Filters(kind="read")))[-1]
    assert details_of(last)["action"] == action and details_of(last)["via"] == "cli"
    assert upn not in orjson.dumps(last.as_dict()).decode()
