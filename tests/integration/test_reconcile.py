"""``sharing-audit reconcile``: what a school sent held to what the ledger recorded, both
ways. An event sent with no ledger entry is named with the line that sent it; given the
school, an entry of its period that nothing in the files sent is named too; the lookup
is recorded as a read, as every query of the ledger at the command line is."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from pipeline.cli.main import app
from pipeline.engine import Position
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import ENTRY, Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from tests import factory

pytestmark = pytest.mark.integration
runner = CliRunner()
URN = "116234"  # factory.SCHOOL's
ENV = {"SHARING_AUDIT_PSEUDONYM_KEY": "ab" * 32, "COLUMNS": "400"}  # a table row per line


def events(n: int, day: int = 21) -> list[dict[str, object]]:
    return [
        factory.referral(
            pupils=[{"upn": factory.upn(i)}], time=f"2026-07-{day:02d}T09:{i:02d}:00+01:00"
        )
        for i in range(n)
    ]


def recorded(url: str, sent: list[dict[str, object]]) -> Ledger:
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    writer = LedgerWriter(
        ledger, load_pack(), pseudonymiser(bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"]))
    )
    writer.write(
        [(factory.line(e), Position("sharing.referral", 0, i)) for i, e in enumerate(sent)]
    )
    return ledger


def events_file(path: Path, sent: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sent))
    return path


def reconcile(*args: str) -> Result:
    return runner.invoke(app, ["reconcile", *args], env=ENV)


def reads(ledger: Ledger) -> list[dict[str, Any]]:
    with ledger.engine.connect() as connection:
        rows = connection.execute(select(ENTRY.c.details).where(ENTRY.c.kind == "read"))
        return [json.loads(details) for (details,) in rows]


def test_an_event_sent_with_no_ledger_entry_is_named_with_its_line(
    db_url: str, tmp_path: Path
) -> None:
    sent = events(6)
    ledger = recorded(db_url, sent[:2] + sent[3:])
    file = events_file(tmp_path / "term.jsonl", sent)
    done = reconcile(str(file), "--db", db_url)
    assert done.exit_code == 1, done.output
    assert str(sent[2]["id"]) in done.output and f"{file}:3" in done.output
    assert "6 events sent, 5 recorded, 1 not recorded" in done.output
    assert str(sent[0]["id"]) not in done.output
    assert reads(ledger), "the lookup is recorded as a read"


def test_everything_sent_and_recorded_exits_0(sqlite_url: str, tmp_path: Path) -> None:
    sent = events(4)
    recorded(sqlite_url, sent)
    done = reconcile(
        str(events_file(tmp_path / "term.jsonl", sent)), "--db", sqlite_url, "--school", URN
    )
    assert done.exit_code == 0, done.output
    assert "4 events sent, 4 recorded, 0 not recorded" in done.output


def test_an_entry_of_the_school_nothing_sent_is_named(db_url: str, tmp_path: Path) -> None:
    sent = events(5)
    ledger = recorded(db_url, sent)
    file = events_file(tmp_path / "term.jsonl", sent[:1] + sent[2:])
    done = reconcile(str(file), "--db", db_url, "--school", URN, "--format", "jsonl")
    assert done.exit_code == 1, done.output
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(r["missing_from"], r["event_id"]) for r in rows] == [("files", sent[1]["id"])]
    assert rows[0]["seq"] == 2
    (read,) = [r for r in reads(ledger) if r.get("format") == "reconcile"]
    assert read["schools"] == [URN] and read["filters"]["kind"] == "decision"


def test_entries_outside_the_files_period_are_not_counted_unsent(
    sqlite_url: str, tmp_path: Path
) -> None:
    earlier, sent = events(3, day=14), events(3)
    recorded(sqlite_url, earlier + sent)
    done = reconcile(
        str(events_file(tmp_path / "t.jsonl", sent)), "--db", sqlite_url, "--school", URN
    )
    assert done.exit_code == 0, done.output
    since = reconcile(
        str(events_file(tmp_path / "t.jsonl", sent)),
        "--db",
        sqlite_url,
        "--school",
        URN,
        "--since",
        "2026-07-01",
    )
    assert since.exit_code == 1 and all(str(e["id"]) in since.output for e in earlier)


def test_a_watch_folders_receipts_are_what_it_sent(sqlite_url: str, tmp_path: Path) -> None:
    sent = events(3)
    recorded(sqlite_url, sent[:2])
    done_folder = tmp_path / "watch" / "done"
    done_folder.mkdir(parents=True)
    lines = [
        json.dumps({"line": i + 1, "event_id": e["id"], "receipt": "..."})
        for i, e in enumerate(sent)
    ]
    (done_folder / "census.xml.receipts.jsonl").write_text("\n".join(lines) + "\n")
    (done_folder / "census.xml").write_text("<not events/>")
    done = reconcile(str(tmp_path / "watch"), "--db", sqlite_url)
    assert done.exit_code == 1, done.output
    assert str(sent[2]["id"]) in done.output and "census.xml.receipts.jsonl:3" in done.output
    assert "3 events sent, 2 recorded" in done.output


def test_unreadable_input_ends_in_a_plain_line(sqlite_url: str, tmp_path: Path) -> None:
    recorded(sqlite_url, events(1))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe\n{not json\n" + orjson.dumps(events(1)[0]) + b"\n")
    done = reconcile(str(bad), "--db", sqlite_url)
    assert "Traceback" not in done.output
    assert "2 lines name no event" in done.output
    missing = reconcile(str(tmp_path / "nowhere.jsonl"), "--db", sqlite_url)
    assert missing.exit_code == 2 and "cannot read" in missing.output
    school = reconcile(str(bad), "--db", sqlite_url, "--school", "not-a-urn")
    assert school.exit_code == 2 and "URN" in school.output


def test_links_and_pipes_in_a_folder_are_named_and_not_read(
    sqlite_url: str, tmp_path: Path
) -> None:
    sent = events(2)
    recorded(sqlite_url, sent)
    folder = tmp_path / "watch"
    events_file(folder / "done" / "term.jsonl", sent)
    outside = events_file(tmp_path / "elsewhere" / "other.jsonl", events(3, day=22))
    (folder / "done" / "linked.jsonl").symlink_to(outside)
    os.mkfifo(folder / "done" / "pipe.jsonl")
    done = reconcile(str(folder), "--db", sqlite_url)
    assert done.exit_code == 0, done.output
    assert "2 events sent, 2 recorded" in done.output
    assert "linked.jsonl: a symbolic link, not followed" in done.output
    assert "pipe.jsonl: not a regular file" in done.output
