"""``sharing-audit audit receipts``: a school's receipts held to the checkpoint its auditor
accepted. A log made to drop a receipted entry (a second ledger that recorded the same
events but one, signing with the same key) is caught, naming the receipt; a forged receipt
is refused naming why; a log that will not answer, or a poisoned receipts folder, ends
with a plain message, never a traceback."""

from __future__ import annotations

import http.server
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from pipeline.api.app import create_api
from pipeline.cli.main import app
from pipeline.engine import Position
from pipeline.ledger.log.checkpoints import latest, sign_if_grown
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import inclusion_proof, leaf_bytes
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.receipting import signed_receipts
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from pipeline.transparency.delivery import DeliveryReceipt, open_receipt, sign_receipt
from pipeline.transparency.merkle import leaf_hash
from pipeline.transparency.note import Note, Signer
from pipeline.transparency.receipt import receipt_for
from pipeline.users import Role, add_user
from tests import factory
from tests.integration.serving import served

pytestmark = pytest.mark.integration
runner = CliRunner()
LOG = Signer("audit.test.sch.uk/log", bytes(range(32)))
PSEUDONYM_KEY = bytes(range(32))
#: When the receipts were signed: long before the tests run, so past any MMD.
LONG_AGO = 1_767_225_600
EVENTS = 12
DROPPED = 5  # the event (1-based) the second ledger leaves out


@dataclass
class Log:
    """A ledger its log signed a checkpoint of, and the receipts it handed out."""

    ledger: Ledger
    receipts: list[bytes]
    events: list[dict[str, object]]


def open_ledger(path: Path) -> Ledger:
    ledger = Ledger.open(f"sqlite:///{path}")
    schema.upgrade(ledger.engine)
    return ledger


def record(ledger: Ledger, events: list[tuple[int, dict[str, object]]], at: int) -> list[bytes]:
    """Record events read at their offsets, as the worker would; their signed receipts."""
    writer = LedgerWriter(ledger, load_pack(), pseudonymiser(PSEUDONYM_KEY))
    records = [(factory.line(e), Position("sharing.referral", 0, n)) for n, e in events]
    return [r for r in signed_receipts(writer.write(records), LOG, at) if r is not None]


def referrals() -> list[tuple[int, dict[str, object]]]:
    return [(n, factory.referral(pupils=[{"upn": factory.upn(n)}])) for n in range(EVENTS)]


def copied(ledger: Ledger, source: Path, to: Path) -> Ledger:
    """A second ledger holding exactly what ``ledger`` holds now."""
    ledger.engine.dispose()
    with sqlite3.connect(source) as a, sqlite3.connect(to) as b:
        a.backup(b)
    return open_ledger(to)


def honest_and_dropping(tmp_path: Path, at: int = LONG_AGO) -> tuple[Log, Log]:
    """The honest log A, and B: the same events recorded, but event DROPPED left out,
    checkpoints signed with the same key. Both share every entry before the one dropped."""
    events = referrals()
    a = open_ledger(tmp_path / "a.db")
    receipts = record(a, events[: DROPPED - 1], at)
    b = copied(a, tmp_path / "a.db", tmp_path / "b.db")
    receipts += record(a, events[DROPPED - 1 :], at)
    record(b, events[DROPPED:], at)
    for ledger in (a, b):
        assert sign_if_grown(ledger, LOG) is not None
    return Log(a, receipts, [e for _, e in events]), Log(b, [], [])


def receipts_file(folder: Path, receipts: list[bytes], name: str = "term") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.receipts.jsonl"
    lines = []
    for number, note in enumerate(receipts, 1):
        event = DeliveryReceipt.from_text(Note.parse(note).text).event_id  # forged or not
        lines.append(json.dumps({"line": number, "event_id": event, "receipt": note.decode()}))
    path.write_text("\n".join(lines) + "\n")
    return path


def vkey(tmp_path: Path) -> Path:
    path = tmp_path / "log.vkey"
    path.write_text(LOG.verifier.vkey() + "\n")
    return path


def accepted_state(tmp_path: Path, ledger: Ledger) -> Path:
    """The auditor's state, having accepted ``ledger``'s latest checkpoint."""
    with ledger.engine.connect() as connection:
        signed = latest(connection)
    assert signed is not None
    note = tmp_path / "checkpoint.note"
    note.write_bytes(signed.note)
    state = tmp_path / "audit-state"
    done = runner.invoke(
        app, ["audit", "verify", str(note), "--vkey", str(vkey(tmp_path)), "--state", str(state)]
    )
    assert done.exit_code == 0, done.output
    return state


def proofs_dir(tmp_path: Path, ledger: Ledger) -> Path:
    """Every entry's tlog-proof and leaf bytes against the latest checkpoint, as files."""
    folder = tmp_path / "proofs"
    folder.mkdir()
    with ledger.engine.connect() as connection:
        signed = latest(connection)
        assert signed is not None
        size = signed.checkpoint.size
        for seq in range(1, size + 1):
            proof = inclusion_proof(connection, seq - 1, size)
            (folder / f"{seq}.tlog-proof").write_bytes(receipt_for(seq - 1, proof, signed.note))
            (folder / f"{seq}.leaf").write_bytes(leaf_bytes(connection, seq) or b"")
    return folder


def audit_receipts(tmp_path: Path, state: Path, *args: str) -> Result:
    """``audit receipts``; its evidence, unless the test names a folder, under ``tmp_path``
    rather than a new folder in the working directory."""
    where = () if "--evidence" in args else ("--evidence", str(tmp_path / "evidence-default"))
    return runner.invoke(
        app,
        [
            *("audit", "receipts", *args, *where),
            *("--vkey", str(vkey(tmp_path)), "--state", str(state)),
        ],
        env={"SHARING_AUDIT_MAX_MERGE_DELAY_SECONDS": None},
    )


def line_of(output: str, needle: str) -> str:
    return next((line for line in output.splitlines() if needle in line), "")


# -- a log that dropped a receipted entry ------------------------------------------------


def test_a_log_that_dropped_a_receipted_entry_is_caught_naming_its_receipt(tmp_path: Path) -> None:
    honest, dropping = honest_and_dropping(tmp_path)
    held = receipts_file(tmp_path / "school" / "done", honest.receipts)
    state = accepted_state(tmp_path, dropping.ledger)
    evidence = tmp_path / "evidence"
    done = audit_receipts(
        tmp_path,
        state,
        str(held.parent),
        "--proofs",
        str(proofs_dir(tmp_path, dropping.ledger)),
        "--evidence",
        str(evidence),
    )
    assert done.exit_code == 1, done.output
    dropped_event = honest.events[DROPPED - 1]["id"]
    named = line_of(done.output, f"{held}:{DROPPED}")
    assert "misbehaviour" in named and f"seq {DROPPED}" in named and str(dropped_event) in named
    for moved in range(DROPPED + 1, EVENTS + 1):  # every seq after it shifted
        assert "misbehaviour" in line_of(done.output, f"{held}:{moved}")
    assert f"{EVENTS} receipts checked" in done.output
    assert f"{DROPPED - 1} proven" in done.output
    assert f"{EVENTS - DROPPED + 1} misbehaviour" in done.output
    folders = sorted(evidence.iterdir())
    assert len(folders) == EVENTS - DROPPED + 1
    first = folders[0]
    assert (first / "receipt.note").read_bytes() == honest.receipts[DROPPED - 1]
    assert (first / "checkpoint.note").read_bytes() == (state / "checkpoint").read_bytes()
    assert (first / f"{DROPPED}.tlog-proof").is_file()
    assert "broke a promise it signed" in (first / "README.txt").read_text()


def test_every_receipt_of_an_honest_log_is_proven(tmp_path: Path) -> None:
    honest, _ = honest_and_dropping(tmp_path)
    held = receipts_file(tmp_path / "done", honest.receipts)
    state = accepted_state(tmp_path, honest.ledger)
    done = audit_receipts(
        tmp_path, state, str(held), "--proofs", str(proofs_dir(tmp_path, honest.ledger))
    )
    assert done.exit_code == 0, done.output
    assert f"{EVENTS} receipts checked, {EVENTS} proven, 0 pending" in done.output


def test_a_log_that_dropped_a_receipted_entry_is_caught_over_http(tmp_path: Path) -> None:
    honest, dropping = honest_and_dropping(tmp_path)
    held = receipts_file(tmp_path / "done", honest.receipts)
    state = accepted_state(tmp_path, dropping.ledger)
    token = add_user(dropping.ledger, "auditor-of-the-trust", Role.AUDITOR)
    api = create_api(dropping.ledger, policy=load_pack(), pseudonym=pseudonymiser(PSEUDONYM_KEY))
    with served(api) as url:
        done = audit_receipts(
            tmp_path,
            state,
            str(held),
            "--log",
            url,
            "--token",
            token,
            "--evidence",
            str(tmp_path / "evidence"),
        )
    assert done.exit_code == 1, done.output
    assert "misbehaviour" in line_of(done.output, f"{held}:{DROPPED}")
    assert f"{DROPPED - 1} proven" in done.output
    seqs = sorted(int(p.name.split("seq")[1]) for p in (tmp_path / "evidence").iterdir())
    assert seqs[0] == DROPPED
    assert (tmp_path / "evidence" / f"{DROPPED:03d}-seq{DROPPED}" / f"{DROPPED}.leaf").is_file()


def test_receipts_beyond_the_accepted_checkpoint_within_the_mmd_are_pending(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "a.db")
    events = referrals()
    now = int(time.time())
    receipts = record(ledger, events[:8], now)
    sign_if_grown(ledger, LOG)
    state = accepted_state(tmp_path, ledger)
    receipts += record(ledger, events[8:], now)
    held = receipts_file(tmp_path / "done", receipts)
    done = audit_receipts(tmp_path, state, str(held), "--proofs", str(proofs_dir(tmp_path, ledger)))
    assert done.exit_code == 0, done.output
    assert f"{EVENTS} receipts checked, 8 proven, {EVENTS - 8} pending" in done.output
    assert "audit verify" in done.output
    late = audit_receipts(
        tmp_path,
        state,
        str(held),
        "--proofs",
        str(tmp_path / "proofs"),
        "--now",
        str(now + 3600),
    )
    assert late.exit_code == 0, "the MMD is counted to when the checkpoint was accepted"


def test_a_log_that_receipted_a_dropped_event_as_a_duplicate_of_another_is_caught(
    tmp_path: Path,
) -> None:
    """The log leaves event DROPPED out and signs, for it, a duplicate's receipt naming
    the entry of event 1: every receipt then proves, but one entry records one event, so
    two events receipted at one seq is the log's own signed word that it lied."""
    _, dropping = honest_and_dropping(tmp_path)
    events = referrals()
    with dropping.ledger.engine.connect() as connection:
        entry = leaf_bytes(connection, 1)
    assert entry is not None
    first = DeliveryReceipt(
        LOG.name,
        str(events[0][1]["id"]),
        "sharing.referral",
        0,
        0,
        1,
        leaf_hash(entry),
        "allowed",
        LONG_AGO,
    )
    dropped_id = str(events[DROPPED - 1][1]["id"])
    lie = sign_receipt(
        replace(first, event_id=dropped_id, offset=DROPPED - 1, decision="duplicate"), LOG
    )
    held = receipts_file(tmp_path / "done", [sign_receipt(first, LOG), lie])
    state = accepted_state(tmp_path, dropping.ledger)
    evidence = tmp_path / "evidence"
    done = audit_receipts(
        tmp_path,
        state,
        str(held),
        "--proofs",
        str(proofs_dir(tmp_path, dropping.ledger)),
        "--evidence",
        str(evidence),
    )
    assert done.exit_code == 1, done.output
    named = line_of(done.output, f"{held}:2")
    assert "misbehaviour" in named and dropped_id in named and "seq 1" in named
    (folder,) = evidence.iterdir()
    assert (folder / "receipt.note").read_bytes() == lie
    assert (folder / "other-receipt.note").read_bytes() == sign_receipt(first, LOG)
    again = audit_receipts(
        tmp_path,
        state,
        str(folder / "other-receipt.note"),
        str(folder / "receipt.note"),
        "--proofs",
        str(tmp_path / "proofs"),
    )
    assert again.exit_code == 1, "the evidence alone shows it, as its README says"


def test_a_folder_holding_no_receipts_file_is_not_a_clean_audit(tmp_path: Path) -> None:
    """emit --receipts takes any name; a folder is searched for *.receipts.jsonl alone, so
    a school's receipts kept as receipts/term.jsonl were skipped and the audit of the
    README's `audit receipts receipts/` passed, checking nothing."""
    honest, _ = honest_and_dropping(tmp_path)
    folder = tmp_path / "receipts"
    receipts_file(folder, honest.receipts).rename(folder / "term.jsonl")
    state = accepted_state(tmp_path, honest.ledger)
    done = audit_receipts(tmp_path, state, str(folder))
    assert done.exit_code == 2, done.output
    said = line_of(done.output, str(folder))
    assert "no file named *.receipts.jsonl" in said and "unreadable" in said


# -- forged receipts ---------------------------------------------------------------------


def forgeries(good: bytes) -> dict[str, bytes]:
    receipt = open_receipt(good, LOG.verifier)
    other_key = Signer(LOG.name, bytes(range(1, 33)))
    edited_leaf = replace(receipt, leaf=leaf_hash(b"another entry")).text()
    return {
        "other key": sign_receipt(receipt, other_key),
        "edited seq": good.replace(
            f"\nseq {receipt.seq}\n".encode(), f"\nseq {receipt.seq + 1}\n".encode()
        ),
        "edited leaf": good.replace(receipt.text(), edited_leaf),
        "other origin": sign_receipt(
            replace(receipt, origin="elsewhere.sch.uk/log"),
            Signer("elsewhere.sch.uk/log", bytes(range(32))),
        ),
    }


def test_a_forged_receipt_is_refused_naming_the_line_and_why(tmp_path: Path) -> None:
    honest, _ = honest_and_dropping(tmp_path)
    forged = forgeries(honest.receipts[0])
    held = receipts_file(tmp_path / "done", [honest.receipts[0], *forged.values()])
    state = accepted_state(tmp_path, honest.ledger)
    done = audit_receipts(
        tmp_path, state, str(held), "--proofs", str(proofs_dir(tmp_path, honest.ledger))
    )
    assert done.exit_code == 1, done.output
    assert "not signed by the log's key" in line_of(done.output, f"{held}:2")
    assert "does not verify" in line_of(done.output, f"{held}:3")
    assert "does not verify" in line_of(done.output, f"{held}:4")
    assert "not signed by the log's key" in line_of(done.output, f"{held}:5")
    assert "never signed" in done.output  # what it means, said plainly
    assert "1 proven" in done.output and "4 refused" in done.output


def test_without_an_accepted_checkpoint_it_says_to_run_audit_verify(tmp_path: Path) -> None:
    honest, _ = honest_and_dropping(tmp_path)
    held = receipts_file(tmp_path / "done", honest.receipts)
    done = audit_receipts(tmp_path, tmp_path / "no-state", str(held))
    assert done.exit_code == 2
    assert "audit verify" in done.output and "Traceback" not in done.output


# -- a log that will not answer ----------------------------------------------------------


@contextmanager
def answering(status: int, body: bytes) -> Iterator[str]:
    """A server answering every GET with ``status`` and ``body``; its address."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (404, b'{"detail": "no entry"}', "404"),
        (500, b"Internal Server Error\x1b[2J", "500"),
        (200, b"<html>\x00garbage", "not a tlog-proof"),
        (401, b"", "refused the token"),
    ],
)
def test_a_log_that_will_not_prove_leaves_receipts_unproven_saying_why(
    tmp_path: Path, status: int, body: bytes, said: str
) -> None:
    honest, _ = honest_and_dropping(tmp_path)
    held = receipts_file(tmp_path / "done", honest.receipts[:2])
    state = accepted_state(tmp_path, honest.ledger)
    with answering(status, body) as url:
        done = audit_receipts(tmp_path, state, str(held), "--log", url, "--token", "t")
    assert done.exit_code == 2, done.output
    assert said in line_of(done.output, f"{held}:1") and "unproven" in done.output
    assert "Traceback" not in done.output and "\x1b" not in done.output


def test_a_log_that_cannot_be_reached_is_said_so(tmp_path: Path) -> None:
    honest, _ = honest_and_dropping(tmp_path)
    held = receipts_file(tmp_path / "done", honest.receipts[:1])
    state = accepted_state(tmp_path, honest.ledger)
    with answering(200, b"") as url:
        pass  # closed: nothing listens there now
    done = audit_receipts(tmp_path, state, str(held), "--log", url, "--token", "t")
    assert done.exit_code == 2, done.output
    assert "cannot reach the log" in done.output and "Traceback" not in done.output


# -- a poisoned receipts folder ----------------------------------------------------------


def test_a_poisoned_receipts_folder_is_refused_cleanly(tmp_path: Path) -> None:
    honest, _ = honest_and_dropping(tmp_path)
    folder = tmp_path / "done"
    good = receipts_file(folder, honest.receipts[:1], "good")
    outside = receipts_file(tmp_path / "elsewhere", honest.receipts[1:2], "outside")
    (folder / "linked.receipts.jsonl").symlink_to(outside)
    (folder / "linked-folder").symlink_to(outside.parent)
    os.mkfifo(folder / "pipe.receipts.jsonl")
    poisoned = folder / "poisoned.receipts.jsonl"
    poisoned.write_bytes(b"\xff\xfe not utf-8\n" + b"x" * (1 << 20) + b"\n" + b'{"receipt": 7}\n')
    state = accepted_state(tmp_path, honest.ledger)
    done = audit_receipts(
        tmp_path, state, str(folder), "--proofs", str(proofs_dir(tmp_path, honest.ledger))
    )
    assert done.exit_code == 1, done.output
    assert "symbolic link" in line_of(done.output, "linked.receipts.jsonl")
    assert "symbolic link" in line_of(done.output, "linked-folder")
    assert "not a regular file" in line_of(done.output, "pipe.receipts.jsonl")
    assert "not UTF-8" in line_of(done.output, f"{poisoned}:1")
    assert "longer than" in line_of(done.output, f"{poisoned}:2")
    assert "not a string" in line_of(done.output, f"{poisoned}:3")
    assert "proven" in line_of(done.output, "receipts checked")
    assert str(good) not in done.output  # the good one is proven, quietly
    assert "Traceback" not in done.output and str(outside) not in done.output


def test_a_bare_signed_note_is_a_receipt_too(tmp_path: Path) -> None:
    honest, _ = honest_and_dropping(tmp_path)
    note = tmp_path / "3.receipt.note"
    note.write_bytes(honest.receipts[2])
    state = accepted_state(tmp_path, honest.ledger)
    done = audit_receipts(
        tmp_path, state, str(note), "--proofs", str(proofs_dir(tmp_path, honest.ledger))
    )
    assert done.exit_code == 0, done.output
    assert "1 receipts checked, 1 proven" in done.output


def test_a_token_that_cannot_be_sent_is_named_not_a_traceback(tmp_path: Path) -> None:
    honest, _ = honest_and_dropping(tmp_path)
    held = receipts_file(tmp_path / "done", honest.receipts[:1])
    state = accepted_state(tmp_path, honest.ledger)
    for token in ("café", "two\nlines"):
        done = audit_receipts(
            tmp_path, state, str(held), "--log", "http://127.0.0.1:9", "--token", token
        )
        assert done.exit_code == 2 and "--token" in done.output, done.output


def test_a_log_grown_past_the_accepted_checkpoint_is_named_so_it_is_accepted_first(
    tmp_path: Path,
) -> None:
    ledger = open_ledger(tmp_path / "a.db")
    events = referrals()
    receipts = record(ledger, events[:8], LONG_AGO)
    sign_if_grown(ledger, LOG)
    state = accepted_state(tmp_path, ledger)
    receipts += record(ledger, events[8:], LONG_AGO)
    sign_if_grown(ledger, LOG)
    held = receipts_file(tmp_path / "done", receipts)
    token = add_user(ledger, "auditor-of-the-trust", Role.AUDITOR)
    api = create_api(ledger, policy=load_pack(), pseudonym=pseudonymiser(PSEUDONYM_KEY))
    with served(api) as url:
        done = audit_receipts(
            tmp_path,
            state,
            str(held),
            "--log",
            url,
            "--token",
            token,
            "--evidence",
            str(tmp_path / "evidence"),
        )
    assert done.exit_code == 1, done.output  # overdue beyond the tree accepted
    assert f"the log now serves a checkpoint of size {EVENTS}" in done.output
    assert "log consistency --old 8" in done.output


def test_a_receipts_file_named_with_escape_sequences_is_shown_escaped(tmp_path: Path) -> None:
    honest, _ = honest_and_dropping(tmp_path)
    folder = tmp_path / "done"
    folder.mkdir()
    (folder / "\x1b[2Jterm.receipts.jsonl").write_bytes(b"{not json\n")
    state = accepted_state(tmp_path, honest.ledger)
    done = audit_receipts(tmp_path, state, str(folder))
    assert done.exit_code == 1, done.output
    assert "\x1b" not in done.output and "\\x1b[2Jterm.receipts.jsonl:1: refused" in done.output
