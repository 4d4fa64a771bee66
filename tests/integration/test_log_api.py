"""The verifiable log over HTTP, as an auditor's tools fetch it: what the API serves checks
out offline with nothing but the log's verifier key (pipeline.api.log)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pipeline.api.app import create_api
from pipeline.ledger.checkpoints import sign_if_grown
from pipeline.policy.pack import Policy
from pipeline.transparency.auditor import ConsistencyProof
from pipeline.transparency.merkle import verify_consistency
from pipeline.transparency.note import Signer, open_checkpoint
from pipeline.transparency.receipt import check_receipt
from pipeline.users import Role, add_user
from tests.integration.test_audit_api import reads
from tests.integration.year import Year, ledger_of_year, pseudonym, write_year

pytestmark = pytest.mark.integration
LOG = Signer("audit.example.org/ledger", bytes(range(32)))


@pytest.fixture
def year(sqlite_url: str, policy: Policy) -> Year:
    return ledger_of_year(sqlite_url, policy, pupils=40)


@pytest.fixture
def client(year: Year, policy: Policy) -> TestClient:
    return TestClient(create_api(year.ledger, policy=policy, pseudonym=pseudonym))


def auth(year: Year, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {add_user(year.ledger, f'{role.value}-1', role)}"}


def test_the_checkpoint_served_opens_under_the_logs_key(client: TestClient, year: Year) -> None:
    signed = sign_if_grown(year.ledger, LOG)
    assert signed is not None
    answer = client.get("/log/checkpoint", headers=auth(year, Role.AUDITOR))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    checkpoint, _ = open_checkpoint(answer.content, LOG.verifier)
    assert checkpoint == signed.checkpoint


def test_a_receipt_served_proves_the_leaf_served(client: TestClient, year: Year) -> None:
    sign_if_grown(year.ledger, LOG)
    headers = auth(year, Role.AUDITOR)
    receipt = client.get("/log/proof/inclusion/12", headers=headers)
    leaf = client.get("/log/leaf/12", headers=headers)
    assert receipt.status_code == leaf.status_code == 200
    assert check_receipt(receipt.content, leaf.content, LOG.verifier).size >= 12
    other = client.get("/log/leaf/13", headers=headers).content
    with pytest.raises(Exception, match="another root"):
        check_receipt(receipt.content, other, LOG.verifier)


def test_a_consistency_proof_served_links_an_older_checkpoint_to_the_current(
    client: TestClient, year: Year, policy: Policy
) -> None:
    first = sign_if_grown(year.ledger, LOG)
    assert first is not None
    write_year(year.ledger, policy, pupils=10, seed=4)
    second = sign_if_grown(year.ledger, LOG)
    assert second is not None
    answer = client.get(
        "/log/proof/consistency",
        params={"old": first.checkpoint.size},
        headers=auth(year, Role.DPO),
    )
    proof, note = ConsistencyProof.parse(answer.content)
    checkpoint, _ = open_checkpoint(note, LOG.verifier)
    assert checkpoint == second.checkpoint
    verify_consistency(
        first.checkpoint.size, checkpoint.size, first.checkpoint.root, checkpoint.root, proof.hashes
    )


def test_no_checkpoint_yet_is_404_not_an_error(client: TestClient, year: Year) -> None:
    answer = client.get("/log/checkpoint", headers=auth(year, Role.AUDITOR))
    assert answer.status_code == 404


def test_the_log_is_for_signed_in_readers_only(client: TestClient, year: Year) -> None:
    sign_if_grown(year.ledger, LOG)
    for path in ("/log/checkpoint", "/log/proof/inclusion/1", "/log/leaf/1"):
        assert client.get(path).status_code == 401


def test_a_leaf_read_is_recorded_and_a_proof_read_is_not(client: TestClient, year: Year) -> None:
    sign_if_grown(year.ledger, LOG)
    headers = auth(year, Role.AUDITOR)
    before = len(reads(year.ledger))
    client.get("/log/proof/inclusion/3", headers=headers)
    client.get("/log/checkpoint", headers=headers)
    assert len(reads(year.ledger)) == before
    client.get("/log/leaf/3", headers=headers)
    assert len(reads(year.ledger)) == before + 1


def test_sizes_past_the_databases_integers_are_refused_not_a_server_error(
    client: TestClient, year: Year
) -> None:
    headers = auth(year, Role.AUDITOR)
    huge = str(2**63)
    assert client.get(f"/log/proof/inclusion/1?size={huge}", headers=headers).status_code == 422
    assert client.get(f"/log/proof/consistency?old={huge}", headers=headers).status_code == 422
    assert client.get(f"/log/leaf/{huge}", headers=headers).status_code == 404
