"""The desk's policy page: a DPO tries a candidate pack (the pack in force, or an edited
copy uploaded) and sees it beside the pack in force and what it would have decided."""

from __future__ import annotations

import itertools
import re

import pytest
import yaml
from fastapi.testclient import TestClient

from pipeline.api.app import create_api
from pipeline.packs import pack_text
from pipeline.policy.pack import Policy
from pipeline.users import Role, add_user
from tests.integration.test_audit_api import reads
from tests.integration.year import Year, ledger_of_year, pseudonym

pytestmark = pytest.mark.integration
_users = itertools.count(1)


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Year:
    path = tmp_path_factory.mktemp("policy-desk") / "ledger.db"
    return ledger_of_year(f"sqlite:///{path}", policy, pupils=120, seed=3)


def signed_in(year: Year, policy: Policy, role: Role) -> TestClient:
    client = TestClient(create_api(year.ledger, policy=policy, pseudonym=pseudonym))
    token = add_user(year.ledger, f"someone-{role.value}-{next(_users)}", role)
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    return client


def without_nursing_referrals() -> bytes:
    """The shipped pack with the school nursing service taken out of it."""
    document = yaml.safe_load(pack_text()[0])
    del document["recipients"]["agency:school-nursing"]
    return yaml.safe_dump(document, sort_keys=False).encode()


def test_the_pack_in_force_tried_changes_nothing_and_the_look_is_recorded(
    year: Year, policy: Policy
) -> None:
    client = signed_in(year, policy, Role.DPO)
    assert client.get("/desk/policy").status_code == 200
    before = len(reads(year.ledger))
    page = client.post("/desk/policy", data={"pack": ""})
    assert page.status_code == 200
    assert 'id="diff-none"' in page.text
    assert 'id="whatif-none"' in page.text
    assert len(reads(year.ledger)) == before + 1


def test_an_uploaded_pack_is_shown_beside_the_pack_in_force_with_the_events_it_changes(
    year: Year, policy: Policy
) -> None:
    client = signed_in(year, policy, Role.DPO)
    page = client.post(
        "/desk/policy",
        data={"pack": ""},
        files={"candidate": ("no-nursing.yaml", without_nursing_referrals(), "text/yaml")},
    )
    assert page.status_code == 200
    assert "agency:school-nursing" in page.text and "removed" in page.text
    changed = int(re.search(r'id="whatif-changed">(\d+)<', page.text).group(1))  # type: ignore[union-attr]
    nursing = sum(
        1
        for line in year.lines
        if not line.redelivery
        and line.event.get("data", {}).get("recipient") == "agency:school-nursing"
        and line.expected.decision != "rejected"
    )
    assert changed == nursing > 0
    assert 'id="whatif-changes"' in page.text
    for upn in year.upns():
        assert upn not in page.text


def test_a_pack_with_problems_is_refused_naming_them(year: Year, policy: Policy) -> None:
    client = signed_in(year, policy, Role.DPO)
    page = client.post(
        "/desk/policy",
        data={"pack": ""},
        files={"candidate": ("bad.yaml", b"pack: x\nrecipients: {}\n", "text/yaml")},
    )
    assert page.status_code == 422
    assert "The candidate policy bad.yaml cannot be used" in page.text
    assert "categories" in page.text


def test_an_auditor_may_not_try_a_change_of_policy(year: Year, policy: Policy) -> None:
    client = signed_in(year, policy, Role.AUDITOR)
    assert client.get("/desk/policy").status_code == 403
    assert client.post("/desk/policy", data={"pack": ""}).status_code == 403


def test_a_period_that_is_no_date_is_refused_naming_the_field(year: Year, policy: Policy) -> None:
    client = signed_in(year, policy, Role.DPO)
    page = client.post("/desk/policy", data={"pack": "", "since": "last week"})
    assert page.status_code == 422
    assert "From &#39;last week&#39;" in page.text or "From 'last week'" in page.text
