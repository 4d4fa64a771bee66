"""The desk's queue narrowed by status and severity, the risk form that has no default,
and every error of the desk answered in its own layout."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from pipeline.incidents.desk import incidents
from pipeline.incidents.lifecycle import Incident
from pipeline.ledger.storage.store import Ledger
from pipeline.policy.pack import Policy
from pipeline.users import Role, add_user
from tests.integration.breaches import breach_desk, ledger_with_breaches

pytestmark = pytest.mark.integration
#: What every page in the desk's layout carries: its header's link to the queue.
LAYOUT = '<a href="/desk">Breach desk</a>'


@pytest.fixture
def ledger(sqlite_url: str, policy: Policy) -> Ledger:
    return ledger_with_breaches(sqlite_url, policy)


@pytest.fixture
def dpo(ledger: Ledger) -> TestClient:
    token = add_user(ledger, "Dana (DPO)", Role.DPO)
    client = TestClient(breach_desk(ledger))
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    return client


def found(ledger: Ledger) -> dict[int, Incident]:
    with ledger.engine.connect() as connection:
        return dict(incidents(connection))


def rows(page: str) -> list[str]:
    return re.findall(r'data-incident="(\d+)"', page)


def test_the_queue_shows_each_incidents_school(dpo: TestClient) -> None:
    page = dpo.get("/desk").text
    assert "<th>School</th>" in page
    assert page.count('<td class="school" data-urn="116234">school 116234</td>') == 2


def test_the_queue_counts_the_events_of_each_incident(dpo: TestClient, ledger: Ledger) -> None:
    page = dpo.get("/desk").text
    for incident_id, incident in found(ledger).items():
        row = re.search(rf'data-incident="{incident_id}">(.*?)</tr>', page, re.S)
        assert row is not None
        assert f"<td>{len(incident.events)}</td>" in row.group(1)


def test_the_queue_narrowed_to_a_severity_shows_that_severity_alone(
    dpo: TestClient, ledger: Ledger
) -> None:
    assert {i.severity.value for i in found(ledger).values()} == {"high"}
    assert sorted(rows(dpo.get("/desk?severity=high").text)) == sorted(map(str, found(ledger)))
    assert rows(dpo.get("/desk?severity=medium").text) == []
    assert rows(dpo.get("/desk?severity=low").text) == []


def test_the_queue_narrowed_to_a_status_shows_that_status_alone(
    dpo: TestClient, ledger: Ledger
) -> None:
    first = next(iter(found(ledger)))
    assert dpo.post(f"/desk/incidents/{first}/acknowledge", follow_redirects=False).is_redirect
    assert rows(dpo.get("/desk?status=acknowledged").text) == [str(first)]
    assert str(first) not in rows(dpo.get("/desk?status=open").text)
    page = dpo.get("/desk?status=closed").text
    assert rows(page) == [] and "No incident matches these choices." in page


def test_a_filter_that_is_not_a_choice_is_refused_in_the_page(dpo: TestClient) -> None:
    page = dpo.get("/desk?severity=urgent")
    assert page.status_code == 422
    assert "Severity: choose one of high, medium, low" in page.text and LAYOUT in page.text
    bad_school = dpo.get("/desk?school=11623")
    assert bad_school.status_code == 422 and "six digits" in bad_school.text


def test_a_dpo_of_one_school_is_offered_no_school_filter(ledger: Ledger) -> None:
    token = add_user(ledger, "one-school", Role.DPO, schools=["116234"])
    client = TestClient(breach_desk(ledger))
    client.post("/desk/signin", data={"token": token})
    page = client.get("/desk").text
    assert 'name="status"' in page and 'name="school"' not in page


def test_the_risk_form_opens_on_a_choice_that_is_not_an_answer(
    dpo: TestClient, ledger: Ledger
) -> None:
    first = next(iter(found(ledger)))
    dpo.post(f"/desk/incidents/{first}/acknowledge")
    page = dpo.get(f"/desk/incidents/{first}").text
    select = re.search(r'<select id="risk"[^>]*>(.*?)</select>', page, re.S)
    assert select is not None and "required" in page.split('<select id="risk"')[1].split(">")[0]
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)', select.group(1))
    assert options[0] == ("", "Choose…")
    assert "selected" not in select.group(1)


def test_an_assessment_without_a_risk_chosen_is_refused_in_the_page_and_records_nothing(
    dpo: TestClient, ledger: Ledger
) -> None:
    first = next(iter(found(ledger)))
    dpo.post(f"/desk/incidents/{first}/acknowledge")
    typed = "Medical notes went to the nursing service without consent."
    for risk in ("", "extreme"):
        answer = dpo.post(f"/desk/incidents/{first}/assess", data={"risk": risk, "reasons": typed})
        assert answer.status_code == 422
        assert "Choose the risk to the pupils" in answer.text and LAYOUT in answer.text
        assert f">{typed}</textarea>" in answer.text  # what was typed is not lost
    assert found(ledger)[first].risk is None


def test_an_unknown_incident_is_a_404_in_the_desks_layout(dpo: TestClient) -> None:
    for answer in (dpo.get("/desk/incidents/999999"), dpo.post("/desk/incidents/999999/pupils")):
        assert answer.status_code == 404
        assert "There is no incident 999999." in answer.text and LAYOUT in answer.text


def test_a_refusal_for_a_role_is_a_403_in_the_desks_layout(ledger: Ledger) -> None:
    token = add_user(ledger, "auditor", Role.AUDITOR)
    client = TestClient(breach_desk(ledger))
    client.post("/desk/signin", data={"token": token})
    answer = client.post("/desk/sar", data={"upn": "A850123426001"})
    assert answer.status_code == 403
    assert "may not run a subject-access report" in answer.text and LAYOUT in answer.text


def test_an_address_a_page_cannot_take_is_a_422_in_the_desks_layout(dpo: TestClient) -> None:
    for answer in (dpo.get("/desk/incidents/abc"), dpo.post("/desk/incidents/1/forget")):
        assert answer.status_code == 422
        assert "This page cannot take what was sent" in answer.text and LAYOUT in answer.text


def test_a_page_the_desk_does_not_have_is_a_404_in_its_layout(dpo: TestClient) -> None:
    answer = dpo.get("/desk/nowhere")
    assert answer.status_code == 404
    assert "There is no such page on the desk." in answer.text and LAYOUT in answer.text


def test_the_apis_errors_stay_json(dpo: TestClient) -> None:
    answer = dpo.get("/incidents/abc", headers={"Authorization": "Bearer nobody"})
    assert answer.status_code == 401 and answer.headers["content-type"] == "application/json"
    assert dpo.get("/nowhere").json() == {"detail": "Not Found"}
