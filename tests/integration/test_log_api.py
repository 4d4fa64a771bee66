"""The verifiable log over HTTP, as an auditor's tools fetch it: what the API serves checks
out offline with nothing but the log's verifier key (pipeline.api.log)."""

from __future__ import annotations

import base64
import uuid

import orjson
import pytest
from fastapi.testclient import TestClient

from pipeline.api.app import create_api
from pipeline.ledger.log.checkpoints import sign_if_grown
from pipeline.ledger.reading import reads as reads_module
from pipeline.ledger.reading.queries import entry_at
from pipeline.ledger.reading.reads import readers_of
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import leaf_bytes
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.transparency.auditor import ConsistencyProof
from pipeline.transparency.merkle import leaf_hash, verify_consistency, verify_inclusion
from pipeline.transparency.note import Signer, open_checkpoint
from pipeline.transparency.receipt import check_receipt
from pipeline.transparency.tiles import Tile, root_from_tiles, tiles_for, unbundle
from pipeline.users import Role, add_user
from tests.factory import census, line, upn
from tests.integration.test_audit_api import a_census_pupil, details_of, reads
from tests.integration.test_verifiable_log import ENV, ledger_with
from tests.integration.year import Year, ledger_of_year, pseudonym, write_year

pytestmark = pytest.mark.integration
LOG = Signer("audit.example.org/ledger", bytes(range(32)))
#: What a full tile or bundle may be kept for, and a partial one or the checkpoint.
LASTING = "private, max-age=31536000, immutable"
BRIEF = "private, max-age=5"


@pytest.fixture
def year(sqlite_url: str, policy: Policy) -> Year:
    return ledger_of_year(sqlite_url, policy, pupils=40)


@pytest.fixture
def client(year: Year, policy: Policy) -> TestClient:
    return TestClient(create_api(year.ledger, policy=policy, pseudonym=pseudonym))


def auth(year: Year, role: Role) -> dict[str, str]:
    token = add_user(year.ledger, f"{role.value}-{uuid.uuid4().hex[:8]}", role)
    return {"Authorization": f"Bearer {token}"}


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


# -- tiles, for mirrors (C2SP tlog-tiles) ---------------------------------------------------


@pytest.fixture
def tiled(year: Year, policy: Policy) -> Year:
    """The year with enough entries for a full tile and the level above it."""
    write_year(year.ledger, policy, pupils=150, seed=5)
    return year


def test_a_mirror_rebuilds_the_checkpoints_root_from_the_tiles_and_bundles_served(
    client: TestClient, tiled: Year
) -> None:
    signed = sign_if_grown(tiled.ledger, LOG)
    assert signed is not None and signed.checkpoint.size > 256  # a full tile and a level above
    headers = auth(tiled, Role.AUDITOR)
    fetched = {}
    for tile in tiles_for(signed.checkpoint.size):
        answer = client.get(f"/log/{tile.path}", headers=headers)
        assert answer.status_code == 200, (tile.path, answer.text)
        assert answer.headers["content-type"] == "application/octet-stream"
        fetched[tile] = answer.content
    assert root_from_tiles(signed.checkpoint.size, fetched) == signed.checkpoint.root
    for tile in (t for t in fetched if t.entries):
        hashes = fetched[Tile(0, tile.index, tile.width)]
        assert b"".join(leaf_hash(leaf) for leaf in unbundle(fetched[tile])) == hashes


def test_a_tile_beyond_the_current_checkpoint_or_misspelt_is_404(
    client: TestClient, tiled: Year
) -> None:
    signed = sign_if_grown(tiled.ledger, LOG)
    assert signed is not None
    headers = auth(tiled, Role.AUDITOR)
    past = Tile(0, signed.checkpoint.size // 256, signed.checkpoint.size % 256 + 1)
    answer = client.get(f"/log/{past.path}", headers=headers)
    assert answer.status_code == 404 and "beyond the current checkpoint" in answer.text
    answer = client.get("/log/tile/0/0", headers=headers)
    assert answer.status_code == 404 and "three-digit groups" in answer.text


def test_an_entry_bundle_read_is_recorded_among_its_pupils_readers_and_a_hash_tile_is_not(
    client: TestClient, tiled: Year
) -> None:
    sign_if_grown(tiled.ledger, LOG)
    headers = auth(tiled, Role.AUDITOR)
    before = len(reads(tiled.ledger))
    assert client.get("/log/tile/0/000", headers=headers).status_code == 200
    assert len(reads(tiled.ledger)) == before
    assert client.get("/log/tile/entries/000", headers=headers).status_code == 200
    (bundle_read,) = reads(tiled.ledger)[before:]
    assert details_of(bundle_read)["action"] == "bundle"
    with tiled.ledger.engine.connect() as connection:
        pupil = next(
            entry.pupil_keys[0]
            for entry in (entry_at(connection, seq) for seq in range(1, 257))
            if entry and entry.pupil_keys
        )
        assert bundle_read.seq in [r.seq for r in readers_of(connection, pupil)]


def test_an_entry_bundle_is_gzipped_for_a_client_that_accepts_it(
    client: TestClient, tiled: Year
) -> None:
    sign_if_grown(tiled.ledger, LOG)
    headers = {**auth(tiled, Role.AUDITOR), "Accept-Encoding": "gzip"}
    answer = client.get("/log/tile/entries/000", headers=headers)
    assert answer.headers["content-encoding"] == "gzip"
    assert len(unbundle(answer.content)) == 256  # the client undoes the encoding


def test_full_tiles_are_cacheable_for_good_and_partial_ones_and_the_checkpoint_briefly(
    client: TestClient, tiled: Year
) -> None:
    """tlog-tiles: a full tile never changes; a partial tile is outgrown (and a log may
    drop it) and the checkpoint moves on, so neither is kept long. Nothing in front of
    the routes may override what each says."""
    signed = sign_if_grown(tiled.ledger, LOG)
    assert signed is not None and signed.checkpoint.size % 256
    headers = auth(tiled, Role.AUDITOR)
    partial = Tile(0, signed.checkpoint.size // 256, signed.checkpoint.size % 256)
    for path in ("tile/0/000", "tile/entries/000", partial.path, "checkpoint"):
        answer = client.get(f"/log/{path}", headers=headers)
        assert answer.status_code == 200, path
        wanted = [LASTING if path.endswith("000") else BRIEF]
        assert answer.headers.get_list("cache-control") == wanted, path


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip;q=0", False),  # a weight of 0 refuses gzip
        ("br, gzip; q=0.000", False),
        ("*;q=0", False),
        ("identity", False),
        ("br;q=1, GZIP;q=0.5", True),
        ("*", True),
        ("identity, *;q=0.1", True),
    ],
)
def test_an_entry_bundle_is_gzipped_only_when_the_client_accepts_gzip(
    client: TestClient, tiled: Year, accept_encoding: str, gzipped: bool
) -> None:
    sign_if_grown(tiled.ledger, LOG)
    headers = {**auth(tiled, Role.AUDITOR), "Accept-Encoding": accept_encoding}
    answer = client.get("/log/tile/entries/000", headers=headers)
    assert answer.status_code == 200
    assert answer.headers.get("content-encoding") == ("gzip" if gzipped else None)
    assert len(unbundle(answer.content)) == 256


@pytest.mark.parametrize("path", ["checkpoint", "tile/0/000", "tile/entries/000"])
def test_head_answers_as_get_would_without_the_body(
    client: TestClient, tiled: Year, path: str
) -> None:
    sign_if_grown(tiled.ledger, LOG)
    headers = {**auth(tiled, Role.AUDITOR), "Accept-Encoding": "identity"}
    got = client.get(f"/log/{path}", headers=headers)
    head = client.head(f"/log/{path}", headers=headers)
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "cache-control"):
        assert head.headers.get_list(name) == got.headers.get_list(name), name


def test_head_of_an_entry_bundle_is_not_recorded_as_a_read(client: TestClient, tiled: Year) -> None:
    """HEAD gives out no entry: only a GET of a bundle is a read of its entries."""
    sign_if_grown(tiled.ledger, LOG)
    headers = auth(tiled, Role.AUDITOR)
    before = len(reads(tiled.ledger))
    assert client.head("/log/tile/entries/000", headers=headers).status_code == 200
    assert len(reads(tiled.ledger)) == before


def ledger_with_census(url: str, pupils: int) -> Ledger:
    """A ledger whose one entry is a census of ``pupils`` pupils: a leaf of ~30 bytes each."""
    named = [{"upn": upn(i % 1000, la=(850, 851, 852)[i // 1000])} for i in range(pupils)]
    return ledger_with(url, [line(census(pupils=named))])


def test_an_entry_too_long_for_a_bundle_is_named_with_where_to_fetch_it(
    sqlite_url: str, policy: Policy
) -> None:
    ledger = ledger_with_census(sqlite_url, pupils=3000)
    sign_if_grown(ledger, LOG)
    key = bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"])
    client = TestClient(create_api(ledger, policy=policy, pseudonym=pseudonymiser(key)))
    token = add_user(ledger, "auditor", Role.AUDITOR)
    answer = client.get("/log/tile/entries/000.p/1", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 422 and "/log/leaf/1" in answer.text


# -- receipts in what is handed out: subject-access reports and exports --------------------


def checks_out(ledger_year: Year, signed_text: str, seq: int, inclusion: dict[str, object]) -> None:
    """``inclusion`` proves entry ``seq``'s leaf is in the checkpoint ``signed_text``,
    with the log's key alone and the leaf hashed here."""
    checkpoint, _ = open_checkpoint(signed_text.encode(), LOG.verifier)
    assert inclusion["checkpoint_size"] == checkpoint.size and inclusion["index"] == seq - 1
    with ledger_year.ledger.engine.connect() as connection:
        leaf = leaf_bytes(connection, seq) or b""
    proof = [base64.b64decode(h) for h in inclusion["proof"]]  # type: ignore[attr-defined]
    verify_inclusion(seq - 1, checkpoint.size, leaf_hash(leaf), proof, checkpoint.root)


def test_a_subject_access_report_carries_a_checkable_proof_for_each_entry(
    client: TestClient, year: Year
) -> None:
    sign_if_grown(year.ledger, LOG)
    upn = a_census_pupil(year)
    answer = client.post("/pupils/sar", json={"upn": upn}, headers=auth(year, Role.DPO))
    report = answer.json()
    log = report["verifiable_log"]
    assert sorted(p["seq"] for p in log["proofs"]) == sorted(report["entries"])
    assert log["after_the_checkpoint"] == []
    for proof in log["proofs"]:
        checks_out(year, log["checkpoint"], proof["seq"], proof)
    page = client.post(
        "/pupils/sar", json={"upn": upn, "format": "html"}, headers=auth(year, Role.DPO)
    ).text
    appendix = page.split("For an auditor or anyone checking this report", 1)[1]
    assert LOG.name in appendix


def test_entries_after_the_checkpoint_are_named_not_given_a_false_proof(
    client: TestClient, year: Year, policy: Policy
) -> None:
    sign_if_grown(year.ledger, LOG)
    upn = a_census_pupil(year)
    write_year(year.ledger, policy, pupils=10, seed=4)  # more entries, no checkpoint yet
    report = client.post("/pupils/sar", json={"upn": upn}, headers=auth(year, Role.DPO)).json()
    log = report["verifiable_log"]
    assert all(seq <= log["size"] for seq in (p["seq"] for p in log["proofs"]))
    assert all(seq > log["size"] for seq in log["after_the_checkpoint"])


def test_a_json_lines_export_carries_proofs_and_ends_with_their_checkpoint(
    client: TestClient, year: Year
) -> None:
    sign_if_grown(year.ledger, LOG)
    with client.stream(
        "GET",
        "/entries/export",
        params={"format": "jsonl", "type": "census"},
        headers=auth(year, Role.AUDITOR),
    ) as response:
        lines = [orjson.loads(line) for line in b"".join(response.iter_bytes()).splitlines()]
    *entries, last = lines
    assert int(response.headers["x-entry-count"]) == len(entries) > 0
    assert "checkpoint" in last and "seq" not in last
    for entry in entries:
        checks_out(year, last["checkpoint"], entry["seq"], entry["inclusion"])


def test_an_export_of_several_chunks_proves_each_entry_and_names_none_after_the_checkpoint(
    client: TestClient, year: Year, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proofs are read a chunk of entries at a time (chunks of 7 here, so that the year
    makes many): across the chunks' edges each entry still carries its own proof, in
    order, and the entries recorded after the checkpoint carry none."""
    monkeypatch.setattr(reads_module, "EXPORT_CHUNK", 7)
    signed = sign_if_grown(year.ledger, LOG)
    assert signed is not None
    write_year(year.ledger, policy, pupils=10, seed=4)  # more entries, no checkpoint yet
    with client.stream(
        "GET", "/entries/export", params={"format": "jsonl"}, headers=auth(year, Role.AUDITOR)
    ) as response:
        lines = [orjson.loads(line) for line in b"".join(response.iter_bytes()).splitlines()]
    *entries, last = lines
    size = signed.checkpoint.size
    seqs = [entry["seq"] for entry in entries]
    # Every entry up to the export's own read, each once, in order: none lost at an edge.
    assert seqs == list(range(1, int(response.headers["x-entry-count"]) + 1))
    assert len(entries) > 10 * 7 and any(seq > size for seq in seqs)
    for entry in entries:
        if entry["seq"] <= size:
            checks_out(year, last["checkpoint"], entry["seq"], entry["inclusion"])
        else:
            assert entry["inclusion"] is None


def test_without_a_checkpoint_reports_say_so_and_exports_are_entries_only(
    client: TestClient, year: Year
) -> None:
    upn = a_census_pupil(year)
    report = client.post("/pupils/sar", json={"upn": upn}, headers=auth(year, Role.DPO)).json()
    assert report["verifiable_log"] is None
    with client.stream(
        "GET", "/entries/export", params={"format": "jsonl"}, headers=auth(year, Role.AUDITOR)
    ) as response:
        lines = [orjson.loads(line) for line in b"".join(response.iter_bytes()).splitlines()]
    assert all("seq" in line and "inclusion" not in line for line in lines)
