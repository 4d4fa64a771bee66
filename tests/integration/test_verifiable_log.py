"""The verifiable log, as its operator and its auditors use it: the tree kept with the
entries, checkpoints, receipts, and an auditor who refuses a history rewritten with the
log's own signing key (sharing-audit log, sharing-audit audit)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import math
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from pipeline.cli.main import app
from pipeline.engine import Position
from pipeline.ledger.integrity.checkpoint_check import kept_checkpoints
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import (
    STORED_LEAVES,
    inclusion_proof,
    inclusion_proofs,
    leaf_bytes,
    root_at,
    stored_nodes,
    tree_size,
)
from pipeline.ledger.writing.acts import append_act
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from pipeline.settings import DEFAULT_LOG_ORIGIN
from pipeline.simulate import simulate
from pipeline.transparency.merkle import tree_root, verify_inclusion
from pipeline.transparency.note import (
    COSIGNATURE,
    Checkpoint,
    Note,
    Signer,
    Verifier,
    cosign,
    sign_note,
)
from tests.integration.test_ledger_contract import drop_triggers

pytestmark = pytest.mark.integration
runner = CliRunner()
LOG_KEY = "5a" * 32
ORIGIN_OF_TESTS = DEFAULT_LOG_ORIGIN
ENV = {"SHARING_AUDIT_LOG_KEY": LOG_KEY, "SHARING_AUDIT_PSEUDONYM_KEY": "ab" * 32}


def events(pupils: int, seed: int = 3) -> list[bytes]:
    return [orjson.dumps(line.event) for line in simulate(pupils, 0.05, seed)]


def ledger_with(url: str, raws: list[bytes]) -> Ledger:
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    record(ledger, raws)
    return ledger


def record(ledger: Ledger, raws: list[bytes], first: int = 0) -> None:
    writer = LedgerWriter(
        ledger, load_pack(), pseudonymiser(bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"]))
    )
    for start in range(0, len(raws), 1000):
        batch = raws[start : start + 1000]
        writer.write([(r, Position.line("t", first + start + i)) for i, r in enumerate(batch)])


def log(*args: str, url: str) -> bytes:
    done = runner.invoke(app, ["log", *args, "--db", url], env=ENV)
    assert done.exit_code == 0, done.output
    return done.stdout_bytes


def audit(*args: str) -> tuple[int, str]:
    done = runner.invoke(app, ["audit", *args], env=ENV)
    return done.exit_code, done.output


def count(ledger: Ledger) -> int:
    with ledger.engine.connect() as connection:
        return int(connection.execute(text("SELECT max(seq) FROM ledger_entry")).scalar_one())


# -- the tree ------------------------------------------------------------------------------


def test_the_tree_is_kept_with_the_entries_and_its_root_is_the_rfc_root_of_their_leaves(
    db_url: str,
) -> None:
    ledger = ledger_with(db_url, events(40))
    n = count(ledger)
    with ledger.engine.connect() as connection:
        leaves = [leaf_bytes(connection, seq) or b"" for seq in range(1, n + 1)]
        assert tree_size(connection) == n - n % STORED_LEAVES  # the rest from the entries
        for size in (1, 2, 3, n // 2, n - 1, n):
            assert root_at(connection, size) == tree_root(leaves[:size])


def test_the_proofs_of_many_entries_read_at_once_are_each_entrys_own_proof(
    db_url: str,
) -> None:
    """A subject-access report proves each of a pupil's entries with one read of the
    tree's nodes for all of them: over more blocks of leaves than one statement reads,
    the last one short, each proof is the one read alone, and proves its leaf."""
    ledger = ledger_with(db_url, events(3000))
    n = count(ledger)
    picked = [*range(0, n, 2 * STORED_LEAVES), n - 2, n - 1]
    assert len(picked) > 200 and n % STORED_LEAVES  # several statements, a partial block
    with ledger.engine.connect() as connection:
        at_once = inclusion_proofs(connection, picked, n)
        root = root_at(connection, n)
        for index, proof in zip(picked, at_once, strict=True):
            assert proof == inclusion_proof(connection, index, n)
            leaf = hashlib.sha256(b"\x00" + (leaf_bytes(connection, index + 1) or b"")).digest()
            verify_inclusion(index, n, leaf, proof, root)


def test_nodes_asked_on_more_levels_than_a_statement_holds_are_each_found_once(
    db_url: str,
) -> None:
    """A statement asks for a bounded number of levels (SQLite refuses an expression of
    a thousand terms): asked for every node on 1,100 levels, most empty, the tree answers
    with exactly the nodes it keeps."""
    ledger = ledger_with(db_url, events(40))
    with ledger.engine.connect() as connection:
        kept = {
            (int(level), int(idx)): bytes(digest)
            for level, idx, digest in connection.execute(
                text("SELECT level, idx, hash FROM tree_node")
            )
        }
        asked = [*kept, *((level, 0) for level in range(100, 1200))]
        assert len(kept) > 1 and stored_nodes(connection, asked) == kept


def test_a_leaf_is_the_entrys_canonical_json_with_pseudonyms_not_upns(sqlite_url: str) -> None:
    raws = events(5)
    ledger = ledger_with(sqlite_url, raws)
    upns = {
        pupil["upn"].encode()
        for raw in raws
        for pupil in orjson.loads(raw).get("data", {}).get("pupils", [])
    }
    leaves = [log("leaf", str(seq), url=sqlite_url) for seq in range(1, count(ledger) + 1)]
    assert upns and not any(upn in leaf for leaf in leaves for upn in upns)
    fields = orjson.loads(leaves[0])
    assert fields["seq"] == 1 and "prev_hash" not in fields and "hash" not in fields
    assert any(orjson.loads(leaf)["pupil_keys"] for leaf in leaves)
    with ledger.engine.connect() as connection:
        assert leaf_bytes(connection, 1) == leaves[0]


# -- the operator's commands and the auditor's ---------------------------------------------


def test_a_receipt_from_the_log_is_accepted_by_the_auditor_for_its_entry_only(
    sqlite_url: str, tmp_path: Path
) -> None:
    ledger_with(sqlite_url, events(20))
    (tmp_path / "vkey").write_bytes(log("vkey", url=sqlite_url))
    log("checkpoint", url=sqlite_url)
    (tmp_path / "receipt").write_bytes(log("prove", "7", url=sqlite_url))
    (tmp_path / "leaf7").write_bytes(log("leaf", "7", url=sqlite_url))
    (tmp_path / "leaf8").write_bytes(log("leaf", "8", url=sqlite_url))
    given = ["--vkey", str(tmp_path / "vkey"), "--state", str(tmp_path / "state")]
    status, said = audit("receipt", str(tmp_path / "receipt"), str(tmp_path / "leaf7"), *given)
    assert status == 0, said
    status, said = audit("receipt", str(tmp_path / "receipt"), str(tmp_path / "leaf8"), *given)
    assert status == 1 and "refused" in said


@pytest.mark.slow  # 10,000 entries written
def test_the_auditor_follows_10000_more_entries_with_a_short_consistency_proof(
    sqlite_url: str, tmp_path: Path
) -> None:
    ledger = ledger_with(sqlite_url, events(10))
    (tmp_path / "vkey").write_bytes(log("vkey", url=sqlite_url))
    (tmp_path / "first").write_bytes(log("checkpoint", url=sqlite_url))
    state, vkey = str(tmp_path / "state"), str(tmp_path / "vkey")
    assert audit("verify", str(tmp_path / "first"), "--vkey", vkey, "--state", state)[0] == 0
    old = count(ledger)
    more = events(4500, seed=9)
    record(ledger, more[:10_200], first=old)
    assert count(ledger) - old >= 10_000
    (tmp_path / "second").write_bytes(log("checkpoint", url=sqlite_url))
    proof = log("consistency", "--old", str(old), url=sqlite_url)
    (tmp_path / "proof").write_bytes(proof)
    hashes = proof.split(b"\n\n")[0].split(b"\n")[1:]
    assert len(hashes) <= 2 * math.ceil(math.log2(count(ledger)))
    status, said = audit(
        "verify",
        str(tmp_path / "second"),
        "--vkey",
        vkey,
        "--state",
        state,
        "--proof",
        str(tmp_path / "proof"),
    )
    assert status == 0, said
    assert (tmp_path / "state" / "checkpoint").read_bytes() == (tmp_path / "second").read_bytes()


# -- an operator who rewrites history with the log's own key -------------------------------


@pytest.fixture
def true_history(tmp_path: Path) -> tuple[list[bytes], Path, Path, int]:
    """A ledger, its checkpoint accepted by an auditor; the events, the state, the vkey,
    and the size accepted."""
    raws = events(30)
    url = f"sqlite:///{tmp_path}/true.db"
    ledger = ledger_with(url, raws)
    (tmp_path / "vkey").write_bytes(log("vkey", url=url))
    (tmp_path / "true-checkpoint").write_bytes(log("checkpoint", url=url))
    state = tmp_path / "state"
    status, said = audit(
        "verify",
        str(tmp_path / "true-checkpoint"),
        "--vkey",
        str(tmp_path / "vkey"),
        "--state",
        str(state),
    )
    assert status == 0, said
    return raws, state, tmp_path / "vkey", count(ledger)


def rewritten(raws: list[bytes], folder: Path, extra: list[bytes]) -> str:
    """The same events, but the second one changed, and ``extra`` after them: a ledger
    rebuilt by an operator holding the log key."""
    changed = orjson.loads(raws[1])
    changed["id"] = str(uuid.uuid4())
    url = f"sqlite:///{folder}/rewritten-{uuid.uuid4().hex[:6]}.db"
    ledger_with(url, [raws[0], orjson.dumps(changed), *raws[2:], *extra])
    return url


def test_a_rewritten_history_that_grew_is_refused_by_the_auditor(
    true_history: tuple[list[bytes], Path, Path, int], tmp_path: Path
) -> None:
    raws, state, vkey, size = true_history
    url = rewritten(raws, tmp_path, events(5, seed=11))
    (tmp_path / "forged").write_bytes(log("checkpoint", url=url))
    (tmp_path / "proof").write_bytes(log("consistency", "--old", str(size), url=url))
    kept = (state / "checkpoint").read_bytes()
    status, said = audit(
        "verify",
        str(tmp_path / "forged"),
        "--vkey",
        str(vkey),
        "--state",
        str(state),
        "--proof",
        str(tmp_path / "proof"),
    )
    assert status == 1 and "history was rewritten" in said
    assert (state / "checkpoint").read_bytes() == kept


def test_a_receipt_from_a_fork_of_the_kept_size_is_refused(
    true_history: tuple[list[bytes], Path, Path, int], tmp_path: Path
) -> None:
    raws, state, vkey, size = true_history
    url = rewritten(raws, tmp_path, [])
    log("checkpoint", url=url)
    (tmp_path / "receipt").write_bytes(log("prove", "2", url=url))
    (tmp_path / "leaf").write_bytes(log("leaf", "2", url=url))
    given = ["--vkey", str(vkey), "--state", str(state)]
    status, said = audit("receipt", str(tmp_path / "receipt"), str(tmp_path / "leaf"), *given)
    assert status == 1 and f"two different checkpoints of size {size}: the log forked" in said


def test_a_receipt_from_a_grown_rewritten_history_is_refused_with_its_proof(
    true_history: tuple[list[bytes], Path, Path, int], tmp_path: Path
) -> None:
    raws, state, vkey, size = true_history
    url = rewritten(raws, tmp_path, events(5, seed=11))
    log("checkpoint", url=url)
    (tmp_path / "receipt").write_bytes(log("prove", "2", url=url))
    (tmp_path / "leaf").write_bytes(log("leaf", "2", url=url))
    (tmp_path / "proof").write_bytes(log("consistency", "--old", str(size), url=url))
    receipt = [str(tmp_path / "receipt"), str(tmp_path / "leaf")]
    status, said = audit("receipt", *receipt, "--vkey", str(vkey), "--state", str(state))
    assert status == 1 and f"a consistency proof from size {size} is needed" in said
    status, said = audit(
        "receipt", *receipt, "--vkey", str(vkey), "--state", str(state),
        "--proof", str(tmp_path / "proof"),
    )  # fmt: skip
    assert status == 1 and "history was rewritten" in said


def test_a_rollback_to_a_smaller_tree_is_refused(
    true_history: tuple[list[bytes], Path, Path, int], tmp_path: Path
) -> None:
    raws, state, vkey, _ = true_history
    url = f"sqlite:///{tmp_path}/smaller.db"
    ledger_with(url, raws[:10])
    (tmp_path / "smaller").write_bytes(log("checkpoint", url=url))
    status, said = audit(
        "verify", str(tmp_path / "smaller"), "--vkey", str(vkey), "--state", str(state)
    )
    assert status == 1 and "rolled back" in said


def test_another_checkpoint_of_the_same_size_is_a_fork(
    true_history: tuple[list[bytes], Path, Path, int], tmp_path: Path
) -> None:
    raws, state, vkey, size = true_history
    url = rewritten(raws, tmp_path, [])
    assert count(Ledger.open(url)) == size
    (tmp_path / "forked").write_bytes(log("checkpoint", url=url))
    status, said = audit(
        "verify", str(tmp_path / "forked"), "--vkey", str(vkey), "--state", str(state)
    )
    assert status == 1 and "forked" in said


def test_a_checkpoint_signed_by_another_key_is_refused(
    true_history: tuple[list[bytes], Path, Path, int], tmp_path: Path
) -> None:
    raws, state, vkey, _ = true_history
    url = f"sqlite:///{tmp_path}/other.db"
    ledger_with(url, raws)
    done = runner.invoke(
        app, ["log", "checkpoint", "--db", url], env={**ENV, "SHARING_AUDIT_LOG_KEY": "77" * 32}
    )
    (tmp_path / "other").write_bytes(done.stdout_bytes)
    status, said = audit(
        "verify", str(tmp_path / "other"), "--vkey", str(vkey), "--state", str(state)
    )
    assert status == 1 and "not signed by the log's key" in said


def test_the_log_key_is_made_beside_a_sqlite_ledger_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/own.db"
    ledger_with(url, events(3))
    done = runner.invoke(
        app, ["log", "vkey", "--db", url], env={"SHARING_AUDIT_PSEUDONYM_KEY": "ab" * 32}
    )
    assert done.exit_code == 0, done.output
    key_file = tmp_path / "own.db.logkey"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert Verifier.parse(done.stdout).name == DEFAULT_LOG_ORIGIN  # no checkpoint yet: the default


def test_a_server_database_without_a_log_key_is_told_to_set_one(pg_url: str) -> None:
    ledger_with(pg_url, events(3))
    done = runner.invoke(
        app, ["log", "vkey", "--db", pg_url], env={"SHARING_AUDIT_PSEUDONYM_KEY": "ab" * 32}
    )
    assert done.exit_code != 0
    assert "SHARING_AUDIT_LOG_KEY" in done.output and "Traceback" not in done.output


# -- ledger verify: the tree and the checkpoints against the entries ---------------------


def verify_says(url: str, env: dict[str, str] = ENV) -> tuple[int, str]:
    done = runner.invoke(app, ["ledger", "verify", "--db", url], env=env)
    return done.exit_code, done.output


def test_ledger_verify_checks_the_tree_and_the_checkpoints(db_url: str) -> None:
    ledger = ledger_with(db_url, events(20))
    log("checkpoint", url=db_url)
    status, said = verify_says(db_url)
    assert status == 0, said
    assert "Merkle tree agrees" in said
    assert f"1 checkpoints checked, latest size {count(ledger)}" in said


def test_ledger_verify_finds_a_tree_node_edited_behind_the_ledgers_back(db_url: str) -> None:
    ledger = ledger_with(db_url, events(20))
    with ledger.engine.begin() as connection:
        drop_triggers(connection, ledger.dialect)
        connection.execute(
            text("UPDATE tree_node SET hash = :h WHERE level = 4 AND idx = 1"), {"h": bytes(32)}
        )
    status, said = verify_says(db_url)
    assert status == 1 and "at seq 17" in said and "level 4, index 1" in said


def test_ledger_verify_finds_a_checkpoint_whose_root_the_entries_do_not_have(db_url: str) -> None:
    ledger = ledger_with(db_url, events(20))
    log("checkpoint", url=db_url)
    record(ledger, events(3, seed=21), first=10_000)
    forged = Signer(ORIGIN_OF_TESTS, bytes.fromhex(LOG_KEY))
    size = count(ledger)
    note = sign_note(Checkpoint(ORIGIN_OF_TESTS, size, bytes(32)).body(), forged).encode()
    with ledger.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO log_checkpoint (size, note, signed_at) VALUES (:s, :n, 'now')"),
            {"s": size, "n": note.decode()},
        )
    status, said = verify_says(db_url)
    assert status == 1 and f"checkpoint of size {size} names a root" in said


def test_ledger_verify_finds_a_checkpoint_not_signed_by_the_logs_key(db_url: str) -> None:
    ledger_with(db_url, events(20))
    log("checkpoint", url=db_url)
    status, said = verify_says(db_url, {**ENV, "SHARING_AUDIT_LOG_KEY": "66" * 32})
    assert status == 1 and "not signed by the log's key" in said


def test_two_writers_appending_in_turn_keep_one_tree(db_url: str) -> None:
    first = ledger_with(db_url, [])
    second = Ledger.open(db_url)
    raws = events(40)
    for turn, start in enumerate(range(0, len(raws), 37)):
        record(first if turn % 2 == 0 else second, raws[start : start + 37], first=start)
    assert_tree_is_the_entries(first)


def test_an_append_that_did_not_commit_leaves_the_next_one_a_true_tree(db_url: str) -> None:
    ours, theirs = ledger_with(db_url, events(10)), Ledger.open(db_url)
    raws = events(30, seed=5)
    with pytest.raises(RuntimeError), ours.locked() as connection:
        record_in(ours, connection, raws[:20])  # our edge now believes in these 20 entries
        raise RuntimeError("the transaction is rolled back")
    with theirs.locked() as connection:  # another writer appends as many other entries
        record_in(theirs, connection, raws[20:40])
    record(ours, raws[40:60], first=200)
    assert_tree_is_the_entries(ours)


def record_in(ledger: Ledger, connection: object, raws: list[bytes]) -> None:
    """Append an entry for each of ``raws`` (its digest the record's), inside a
    transaction the caller holds (and may roll back)."""
    from pipeline.ledger.storage.store import NewEntry

    head, _ = Ledger.head(connection)  # type: ignore[arg-type]
    entries = [
        NewEntry(
            Entry(
                seq=head + i + 1,
                kind="decision",
                recorded_at="2026-12-01T00:00:00Z",
                payload_digest=hashlib.sha256(raw).hexdigest(),
            )
        )
        for i, raw in enumerate(raws)
    ]
    ledger.append(connection, entries)  # type: ignore[arg-type]


def assert_tree_is_the_entries(ledger: Ledger) -> None:
    n = count(ledger)
    with ledger.engine.connect() as connection:
        leaves = [leaf_bytes(connection, seq) or b"" for seq in range(1, n + 1)]
        assert root_at(connection, n) == tree_root(leaves)
        assert verify(connection).ok


WITNESS = Signer("witness.example.org/w1", bytes(range(1, 33)), COSIGNATURE)


@pytest.fixture
def witnessed(sqlite_url: str, tmp_path: Path) -> Path:
    """A folder holding the log's vkey and its checkpoint, bare and cosigned by WITNESS."""
    ledger_with(sqlite_url, events(10))
    (tmp_path / "vkey").write_bytes(log("vkey", url=sqlite_url))
    note = log("checkpoint", url=sqlite_url)
    (tmp_path / "bare").write_bytes(note)
    (tmp_path / "cosigned").write_bytes(
        note + cosign(Note.parse(note), WITNESS, 1767225600).line().encode()
    )
    return tmp_path


def test_the_auditor_can_require_witnesses_to_have_cosigned(witnessed: Path) -> None:
    needs = ["--vkey", str(witnessed / "vkey"), "--witness", WITNESS.verifier.vkey()]
    needs += ["--quorum", "1"]
    status, said = audit("verify", str(witnessed / "bare"), *needs, "--state", str(witnessed / "a"))
    assert status == 1 and "0 of the witnesses given cosigned it; 1 must" in said
    status, said = audit(
        "verify", str(witnessed / "cosigned"), *needs, "--state", str(witnessed / "b")
    )
    assert status == 0, said


def test_one_witness_given_twice_is_refused_rather_than_counted_twice(witnessed: Path) -> None:
    twice = ["--witness", WITNESS.verifier.vkey()] * 2
    status, said = audit(
        "verify", str(witnessed / "cosigned"), "--vkey", str(witnessed / "vkey"),
        "--state", str(witnessed / "state"), *twice, "--quorum", "2",
    )  # fmt: skip
    assert status == 2 and "--witness witness.example.org/w1 is given twice" in said
    assert not (witnessed / "state").exists()


@pytest.mark.slow  # a worker process appending while verify runs, on both databases
@pytest.mark.parametrize("jobs", [1, 3], ids=["one-pass", "three-processes"])
def test_ledger_verify_reads_one_snapshot_while_the_worker_appends(db_url: str, jobs: int) -> None:
    """Three processes read only up to the last entry the verifying connection sees."""
    ledger = ledger_with(db_url, events(100))
    done = threading.Event()

    def appending() -> None:
        while not done.is_set():
            append_act(ledger, EntryKind.READ, {"action": "test"})

    writer = threading.Thread(target=appending)
    writer.start()
    try:
        results = []
        for _ in range(40 if jobs == 1 else 15):
            with ledger.engine.connect() as connection:
                results.append(verify(connection, jobs=jobs, min_range=10))
    finally:
        done.set()
        writer.join()
    assert [r.fault for r in results if not r.ok] == []


# -- what ledger verify can and cannot say of a history its owner rewrote -------------------


def test_ledger_verify_says_how_many_checkpoints_it_checked_and_the_latest_size(
    db_url: str,
) -> None:
    ledger = ledger_with(db_url, events(20))
    log("checkpoint", url=db_url)
    record(ledger, events(3, seed=21), first=10_000)
    log("checkpoint", url=db_url)
    status, said = verify_says(db_url)
    assert status == 0, said
    assert f"2 checkpoints checked, latest size {count(ledger)}" in said


def test_ledger_verify_warns_when_the_log_has_signed_no_checkpoint(db_url: str) -> None:
    ledger_with(db_url, events(5))
    status, said = verify_says(db_url)
    assert status == 0, said
    assert "WARNING: no checkpoint checked" in said and "checkpoints agree" not in said


KEY_BESIDE = {"SHARING_AUDIT_PSEUDONYM_KEY": ENV["SHARING_AUDIT_PSEUDONYM_KEY"]}


def with_key_beside(*args: str) -> tuple[int, str, bytes]:
    """A command run with the log key kept beside the SQLite file (none in the settings)."""
    done = runner.invoke(app, list(args), env=KEY_BESIDE)
    return done.exit_code, done.output, done.stdout_bytes


def rewrite_in_place(path: Path, source: str) -> None:
    """What the database's owner can do: drop the triggers, replace every row with those
    of ``source`` (a chain and tree recomputed over a changed history) and so delete
    every checkpoint the log had signed."""
    with sqlite3.connect(path) as db:
        db.execute("ATTACH DATABASE ? AS rewritten", (source.removeprefix("sqlite:///"),))
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        for (name,) in triggers.fetchall():
            db.execute(f'DROP TRIGGER "{name}"')
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for (table,) in tables:
            if not table.startswith("sqlite_"):
                db.execute(f'DELETE FROM "{table}"')
                db.execute(f'INSERT INTO "{table}" SELECT * FROM rewritten."{table}"')
    assert not sqlite3.connect(path).execute("SELECT count(*) FROM log_checkpoint").fetchone()[0]


@pytest.fixture
def owner_rewrote(tmp_path: Path) -> tuple[str, Path, Path, Path, int]:
    """A SQLite ledger whose checkpoint an auditor kept (in a state folder and a file kept
    elsewhere), then rewritten in place by its owner, who holds the log key kept beside
    it: the URL, the kept checkpoint, the auditor's state, the vkey, and the size."""
    raws = events(30)
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    size = count(ledger_with(url, raws))
    status, said, kept = with_key_beside("log", "checkpoint", "--db", url)
    assert status == 0, said
    (tmp_path / "kept-checkpoint").write_bytes(kept)
    (tmp_path / "vkey").write_bytes(with_key_beside("log", "vkey", "--db", url)[2])
    state = tmp_path / "state"
    assert audit("verify", str(tmp_path / "kept-checkpoint"), "--vkey",
                 str(tmp_path / "vkey"), "--state", str(state))[0] == 0  # fmt: skip
    rewrite_in_place(path, rewritten(raws, tmp_path, []))
    return url, tmp_path / "kept-checkpoint", state, tmp_path / "vkey", size


def test_a_rewrite_that_deleted_every_checkpoint_passes_ledger_verify_with_a_warning(
    owner_rewrote: tuple[str, Path, Path, Path, int],
) -> None:
    url, *_ = owner_rewrote
    status, said, _ = with_key_beside("ledger", "verify", "--db", url)
    assert status == 0, said
    assert "WARNING: no checkpoint checked" in said and "checkpoints agree" not in said


def test_a_re_signed_rewrite_passes_ledger_verify_alone_which_says_it_checked_none_kept_outside(
    owner_rewrote: tuple[str, Path, Path, Path, int],
) -> None:
    url, _, _, _, size = owner_rewrote
    assert with_key_beside("log", "checkpoint", "--db", url)[0] == 0
    status, said, _ = with_key_beside("ledger", "verify", "--db", url)
    assert status == 0, said
    assert f"1 checkpoints checked, latest size {size}" in said
    assert "none kept outside this database" in said


def test_ledger_verify_against_a_checkpoint_kept_outside_finds_the_rewrite(
    owner_rewrote: tuple[str, Path, Path, Path, int],
) -> None:
    url, kept, _, _, size = owner_rewrote
    assert with_key_beside("log", "checkpoint", "--db", url)[0] == 0
    status, said, _ = with_key_beside("ledger", "verify", "--db", url, "--checkpoint", str(kept))
    assert status == 1, said
    assert f"the checkpoint of size {size} kept in {kept}" in said and "rewritten" in said


def test_the_auditors_kept_state_finds_the_re_signed_rewrite(
    owner_rewrote: tuple[str, Path, Path, Path, int], tmp_path: Path
) -> None:
    url, _, state, vkey, _ = owner_rewrote
    (tmp_path / "forged").write_bytes(with_key_beside("log", "checkpoint", "--db", url)[2])
    status, said = audit("verify", str(tmp_path / "forged"), "--vkey", str(vkey),
                         "--state", str(state))  # fmt: skip
    assert status == 1 and "the log forked" in said


def verify_against(url: str, kept: str) -> Result:
    return runner.invoke(app, ["ledger", "verify", "--db", url, "--checkpoint", kept], env=ENV)


def test_ledger_verify_against_a_checkpoint_kept_outside_agrees_with_a_ledger_that_grew(
    sqlite_url: str, tmp_path: Path
) -> None:
    ledger = ledger_with(sqlite_url, events(20))
    (tmp_path / "kept").write_bytes(log("checkpoint", url=sqlite_url))
    size = count(ledger)
    record(ledger, events(3, seed=21), first=10_000)
    done = verify_against(sqlite_url, str(tmp_path / "kept"))
    assert done.exit_code == 0, done.output
    assert f"agrees with the checkpoint of size {size} kept in {tmp_path / 'kept'}" in done.output


def test_ledger_verify_against_a_larger_checkpoint_kept_outside_finds_the_rollback(
    sqlite_url: str, tmp_path: Path
) -> None:
    raws = events(20)
    bigger = f"sqlite:///{tmp_path}/bigger.db"
    size = count(ledger_with(bigger, raws))
    (tmp_path / "kept").write_bytes(log("checkpoint", url=bigger))
    ledger_with(sqlite_url, raws[:5])
    done = verify_against(sqlite_url, str(tmp_path / "kept"))
    assert done.exit_code == 1, done.output
    assert f"fewer than the checkpoint of size {size}" in done.output


@pytest.mark.parametrize(
    "content,named",
    [
        (b"not a checkpoint\n", "is not a signed checkpoint"),
        (sign_note(Checkpoint(ORIGIN_OF_TESTS, 3, bytes(32)).body(),
                   Signer(ORIGIN_OF_TESTS, bytes(range(32)))).encode(),
         "is not signed by the log's key"),
    ],
    ids=["malformed", "another-key"],
)  # fmt: skip
def test_a_kept_checkpoint_that_is_not_the_logs_is_a_clear_mistake(
    sqlite_url: str, tmp_path: Path, content: bytes, named: str
) -> None:
    ledger_with(sqlite_url, events(5))
    (tmp_path / "kept").write_bytes(content)
    done = verify_against(sqlite_url, str(tmp_path / "kept"))
    assert done.exit_code == 2 and named in done.output and "Traceback" not in done.output
    assert str(tmp_path / "kept") in done.output


@contextlib.contextmanager
def witness_serving(note: bytes, origin: str = ORIGIN_OF_TESTS) -> Iterator[str]:
    """A witness's URL answering GET /<hex SHA-256 of origin>/checkpoint with ``note``."""
    path = f"/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint"

    class Witness(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == path
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(note if found else b"no such log\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Witness)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


def test_ledger_verify_against_a_witnesss_checkpoint_finds_the_rewrite(
    owner_rewrote: tuple[str, Path, Path, Path, int],
) -> None:
    url, kept, _, _, size = owner_rewrote
    assert with_key_beside("log", "checkpoint", "--db", url)[0] == 0
    with witness_serving(kept.read_bytes()) as witness:
        status, said, _ = with_key_beside("ledger", "verify", "--db", url, "--checkpoint", witness)
    assert status == 1, said
    assert f"the checkpoint of size {size} kept in {witness}/" in said and "rewritten" in said


def test_a_witness_that_does_not_hold_the_logs_checkpoint_is_a_clear_mistake(
    sqlite_url: str,
) -> None:
    ledger_with(sqlite_url, events(5))
    with witness_serving(b"", origin="another.example/log") as witness:
        done = verify_against(sqlite_url, witness)
    assert done.exit_code == 2 and "the witness answered HTTP 404" in done.output


#: Another key under the witness's name: a cosignature of its is not the witness's.
IMPOSTOR = Signer(WITNESS.name, bytes(range(2, 34)), COSIGNATURE)


def cosigned(note: bytes, *by: Signer) -> bytes:
    """``note`` with a cosignature by each of ``by`` added, as a witness serves it."""
    parsed = Note.parse(note)
    lines = tuple(cosign(parsed, witness, 1_700_000_000) for witness in by)
    return Note(parsed.text, parsed.signatures + lines).encode()


def verified_beside(url: str, served: bytes, option: str = "--checkpoint") -> tuple[int, str]:
    """``ledger verify`` of ``url`` against a witness serving ``served``, its key given."""
    with witness_serving(served) as witness:
        status, said, _ = with_key_beside(
            "ledger", "verify", "--db", url, option, witness, "--witness", WITNESS.verifier.vkey()
        )
    return status, said


def test_ledger_verify_asks_a_witnesss_answer_for_its_cosignature_and_says_so(
    sqlite_url: str,
) -> None:
    ledger_with(sqlite_url, events(5))
    note = with_key_beside("log", "checkpoint", "--db", sqlite_url)[2]
    status, said = verified_beside(sqlite_url, cosigned(note, WITNESS))
    assert status == 0, said
    at = "2023-11-14T22:13:20+00:00"  # 1,700,000,000: when cosigned() says it cosigned
    assert f"cosigned by the witness {WITNESS.name} at {at} (its cosignature verified)" in said
    assert "vouched for by no witness" not in said  # the checkpoint is of the whole ledger


def test_an_older_cosigned_checkpoint_served_again_passes_saying_when_and_what_it_leaves_out(
    sqlite_url: str,
) -> None:
    """A look-alike server may serve the witness's older checkpoint, genuinely cosigned:
    the tree agrees with it, and verify says when it was cosigned and how many entries
    after it no witness vouched for here."""
    ledger = ledger_with(sqlite_url, events(5))
    note = with_key_beside("log", "checkpoint", "--db", sqlite_url)[2]
    size = count(ledger)
    record(ledger, events(3, seed=21), first=10_000)
    status, said = verified_beside(sqlite_url, cosigned(note, WITNESS))
    assert status == 0, said
    assert f"the {count(ledger) - size} entries after it are vouched for by no witness" in said


def test_a_logs_key_given_as_the_witnesss_is_refused_for_what_it_is(sqlite_url: str) -> None:
    """Whoever holds the log's private key could otherwise vouch for the log as its
    witness, with a cosignature made by that key."""
    ledger_with(sqlite_url, events(5))
    log_vkey = with_key_beside("log", "vkey", "--db", sqlite_url)[2].decode().strip()
    note = with_key_beside("log", "checkpoint", "--db", sqlite_url)[2]
    with witness_serving(note) as witness:
        given = with_key_beside(
            "ledger", "verify", "--db", sqlite_url, "--checkpoint", witness, "--witness", log_vkey
        )
        configured = runner.invoke(
            app,
            ["ledger", "verify", "--db", sqlite_url, "--checkpoint", witness],
            env={
                **KEY_BESIDE,
                "SHARING_AUDIT_WITNESSES": orjson.dumps(
                    [{"url": witness, "vkey": log_vkey}]
                ).decode(),
            },
        )
    for status, said in ((given[0], given[1]), (configured.exit_code, configured.output)):
        assert status == 2, said
        assert "a log's (Ed25519), not a witness's cosignature key" in said
        assert "Traceback" not in said


def test_a_witness_configured_at_the_url_asked_has_its_cosignature_checked_unasked(
    sqlite_url: str,
) -> None:
    """However the URL asked is spelt against the one configured (the host's case, the
    default port, a trailing slash), it is the configured witness's, and checked."""
    ledger_with(sqlite_url, events(5))
    note = with_key_beside("log", "checkpoint", "--db", sqlite_url)[2]
    with witness_serving(note) as witness:
        port = witness.rsplit(":", 1)[1]
        configured = orjson.dumps(
            [{"url": f"http://localhost:{port}/", "vkey": WITNESS.verifier.vkey()}]
        )
        for asked in (f"http://LocalHost:{port}", f"HTTP://localhost:{port}//"):
            done = runner.invoke(
                app,
                ["ledger", "verify", "--db", sqlite_url, "--checkpoint", asked],
                env={**KEY_BESIDE, "SHARING_AUDIT_WITNESSES": configured.decode()},
            )
            assert done.exit_code == 2, (asked, done.output)
            assert f"bears no cosignature by the witness {WITNESS.name}" in done.output


@pytest.mark.parametrize("option", ["--checkpoint", "--from"])
def test_a_re_signed_rewrite_served_as_the_witnesss_answer_is_refused_for_want_of_its_cosignature(
    owner_rewrote: tuple[str, Path, Path, Path, int], option: str
) -> None:
    """The owner who rewrote the history holds the log key: what they sign again and serve
    at the witness's address (a look-alike server, an http:// answer changed on the way)
    agrees with the rewritten tree. Only the witness's cosignature tells it apart."""
    url, *_ = owner_rewrote
    forged = with_key_beside("log", "checkpoint", "--db", url)[2]
    for served in (forged, cosigned(forged, IMPOSTOR)):
        status, said = verified_beside(url, served, option)
        assert status == 2, said
        assert f"bears no cosignature by the witness {WITNESS.name} that verifies" in said
        assert "Traceback" not in said


def test_without_the_witnesss_key_ledger_verify_says_its_cosignature_was_not_checked(
    owner_rewrote: tuple[str, Path, Path, Path, int],
) -> None:
    url, *_ = owner_rewrote
    forged = with_key_beside("log", "checkpoint", "--db", url)[2]
    with witness_serving(forged) as witness:
        status, said, _ = with_key_beside("ledger", "verify", "--db", url, "--checkpoint", witness)
    assert status == 0, said
    assert "the witness's cosignature not checked: its key is not known here" in said


def test_a_checkpoint_and_a_from_given_together_are_a_clear_mistake(
    sqlite_url: str, tmp_path: Path
) -> None:
    ledger_with(sqlite_url, events(5))
    (tmp_path / "kept").write_bytes(with_key_beside("log", "checkpoint", "--db", sqlite_url)[2])
    kept = str(tmp_path / "kept")
    status, said, _ = with_key_beside(
        "ledger", "verify", "--db", sqlite_url, "--checkpoint", kept, "--from", kept
    )
    assert status == 2 and "--checkpoint and --from: give one" in said


def test_witness_without_a_checkpoint_to_check_is_a_clear_mistake(sqlite_url: str) -> None:
    ledger_with(sqlite_url, events(5))
    status, said, _ = with_key_beside(
        "ledger", "verify", "--db", sqlite_url, "--witness", WITNESS.verifier.vkey()
    )
    assert status == 2 and "--witness goes with --checkpoint or --from" in said


# -- the log key of a ledger that has signed checkpoints -----------------------------------


@pytest.fixture
def key_lost(tmp_path: Path) -> tuple[str, Path]:
    """A SQLite ledger that signed a checkpoint with the key beside it, since lost: its
    URL, and where the key was."""
    url = f"sqlite:///{tmp_path}/signed.db"
    ledger_with(url, events(5))
    assert with_key_beside("log", "checkpoint", "--db", url)[0] == 0
    (tmp_path / "signed.db.logkey").unlink()
    return url, tmp_path / "signed.db.logkey"


def test_a_missing_log_key_beside_a_ledger_with_checkpoints_is_refused_and_none_is_made(
    key_lost: tuple[str, Path],
) -> None:
    url, key_file = key_lost
    for command in (("log", "checkpoint"), ("log", "vkey")):
        status, said, _ = with_key_beside(*command, "--db", url)
        assert status == 2, (command, said)
        assert "no log key" in said and "restore it" in said, command
        assert not key_file.exists(), command


def test_the_worker_signs_nothing_rather_than_make_a_log_key_for_a_ledger_with_checkpoints(
    key_lost: tuple[str, Path],
) -> None:
    from pipeline.cli.worker import checkpointing
    from pipeline.settings import Settings

    url, key_file = key_lost
    assert checkpointing(Settings(log_key=None), url) is None
    assert not key_file.exists()


def test_another_log_key_for_a_ledger_with_checkpoints_signs_nothing_and_says_why(
    tmp_path: Path,
) -> None:
    """The key beside the file replaced by another (or SHARING_AUDIT_LOG_KEY set to one):
    as with a missing key, it must not sign the file's history under the log's origin,
    where no auditor could tell its checkpoints from the log's."""
    url = f"sqlite:///{tmp_path}/signed.db"
    ledger = ledger_with(url, events(5))
    assert with_key_beside("log", "checkpoint", "--db", url)[0] == 0
    (tmp_path / "signed.db.logkey").write_text("6b" * 32)
    record(ledger, events(5, seed=4), first=1000)
    status, said, _ = with_key_beside("log", "checkpoint", "--db", url)
    assert status == 2 and "not the key" in said and "Traceback" not in said, said
    with ledger.engine.connect() as connection:
        assert kept_checkpoints(connection).count == 1


def test_a_missing_log_key_beside_a_file_that_is_not_a_ledger_is_a_clear_mistake(
    tmp_path: Path,
) -> None:
    (tmp_path / "notes.txt").write_text("not a database, but long enough to be read as one\n")
    status, said, _ = with_key_beside("log", "vkey", "--db", f"sqlite:///{tmp_path}/notes.txt")
    assert status == 2 and "not a database" in said and "Traceback" not in said
    assert not (tmp_path / "notes.txt.logkey").exists()


def test_log_checkpoint_on_an_empty_ledger_says_there_is_nothing_to_sign_yet(
    sqlite_url: str,
) -> None:
    ledger_with(sqlite_url, [])
    done = runner.invoke(app, ["log", "checkpoint", "--db", sqlite_url], env=ENV)
    assert done.exit_code == 2
    assert "nothing to sign yet" in done.output and "run sharing-audit log checkpoint" not in (
        done.output
    )
