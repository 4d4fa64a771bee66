"""The ledger commands as a DPO or auditor runs them: real processes, real databases."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.simulate import simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXE = str(Path(sys.executable).parent / "sharing-audit")


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**os.environ, "SHARING_AUDIT_LOG_LEVEL": "INFO", **(env or {})},
    )


@pytest.fixture
def year_file(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    lines = simulate(80, 0.25, 21)
    path = tmp_path / "year.jsonl"
    path.write_text("".join(json.dumps(ln.event) + "\n" for ln in lines))
    return path, [ln.event for ln in lines]


def test_check_with_a_database_records_what_it_prints(
    tmp_path: Path, year_file: tuple[Path, list[dict[str, Any]]]
) -> None:
    path, _ = year_file
    url = f"sqlite:///{tmp_path}/l.db"
    offline = run("check", str(path), "-f", "jsonl")
    recorded = run("check", str(path), "-f", "jsonl", "--db", url, "--batch", "64")
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout == offline.stdout
    verified = run("ledger", "verify", "--db", url)
    assert verified.returncode == 0
    assert verified.stdout.startswith("ledger verified: ")


def test_the_database_url_comes_from_the_environment(
    tmp_path: Path, year_file: tuple[Path, list[dict[str, Any]]]
) -> None:
    path, _ = year_file
    env = {"SHARING_AUDIT_DATABASE_URL": f"sqlite:///{tmp_path}/env.db"}
    assert run("db", "upgrade", env=env).returncode == 0
    assert (
        run("check", str(path), "-f", "jsonl", "--db", env["SHARING_AUDIT_DATABASE_URL"]).returncode
        == 0
    )
    stats = run("ledger", "stats", env=env)
    assert stats.returncode == 0 and "entries:" in stats.stdout


def test_the_default_database_is_a_file_in_the_working_folder(tmp_path: Path) -> None:
    result = run("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0
    assert (tmp_path / "sharing-audit.db").exists()


def test_verify_exits_1_naming_the_changed_entry(
    tmp_path: Path, year_file: tuple[Path, list[dict[str, Any]]]
) -> None:
    path, _ = year_file
    db = tmp_path / "l.db"
    run("check", str(path), "--db", f"sqlite:///{db}", "-f", "jsonl")
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TRIGGER ledger_entry_no_update")
        connection.execute("UPDATE ledger_entry SET decision = 'allowed' WHERE seq = 12")
    result = run("ledger", "verify", "--db", f"sqlite:///{db}")
    assert result.returncode == 1
    assert "seq 12" in result.stderr and "content changed" in result.stderr


def test_query_by_pupil_lists_that_pupils_entries(
    tmp_path: Path, year_file: tuple[Path, list[dict[str, Any]]]
) -> None:
    path, events = year_file
    url = f"sqlite:///{tmp_path}/l.db"
    run("check", str(path), "--db", url, "-f", "jsonl")
    upn = next(e["data"]["upn"] for e in events if e["type"] == "uk.school.pupil.left.v1")
    result = run("ledger", "query", "--db", url, "--pupil", str(upn), "-f", "jsonl")
    assert result.returncode == 0
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert rows and all(
        set(r) >= {"seq", "kind", "event_id", "decision", "rules", "refers_to"} for r in rows
    )
    assert str(upn) not in result.stdout


def test_query_filters_combine(
    tmp_path: Path, year_file: tuple[Path, list[dict[str, Any]]]
) -> None:
    path, _ = year_file
    url = f"sqlite:///{tmp_path}/l.db"
    run("check", str(path), "--db", url, "-f", "jsonl")
    every = [
        json.loads(x)
        for x in run("ledger", "query", "--db", url, "-f", "jsonl").stdout.splitlines()
    ]
    got = [
        json.loads(x)
        for x in run(
            "ledger",
            "query",
            "--db",
            url,
            "-f",
            "jsonl",
            "--decision",
            "breach",
            "--type",
            "referred",
            "--since",
            "2025-10-01",
        ).stdout.splitlines()
    ]
    expected = [
        e
        for e in every
        if e["decision"] == "breach"
        and e["event_type"] == "uk.school.pupil.referred.v1"
        and e["occurred_at"] >= "2025-10-01"
    ]
    assert got == expected and got
    csv_out = run(
        "ledger", "query", "--db", url, "-f", "csv", "--rule", "consent.withdrawn"
    ).stdout.splitlines()
    assert csv_out[0].startswith("seq,kind,refers_to,event_id") and len(csv_out) > 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ledger", "verify", "--db", "nosuchdriver://x"], "not a database URL"),
        (["ledger", "query", "--pupil", "ABC"], "--pupil: not a valid UPN"),
        (["ledger", "query", "--since", "yesterday"], "--since 'yesterday'"),
        (
            ["ledger", "verify", "--db", "postgresql://nobody:secret@127.0.0.1:1/x"],
            "cannot open the ledger",
        ),
    ],
)
def test_mistakes_get_one_line_and_no_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "secret" not in result.stderr


def test_no_upn_or_date_of_birth_reaches_logs_or_errors(
    tmp_path: Path, year_file: tuple[Path, list[dict[str, Any]]]
) -> None:
    path, events = year_file
    url = f"sqlite:///{tmp_path}/l.db"
    result = run("check", str(path), "--db", url, "-f", "jsonl")
    assert "batch_recorded" in result.stderr  # the logs are there to be read
    secrets: set[str] = set()
    for e in events:
        data = e.get("data") or {}
        for p in data.get("pupils", []) or []:
            secrets.update(v for v in (p.get("upn"), p.get("dob")) if v)
        if isinstance(data.get("upn"), str):
            secrets.add(data["upn"])
    for text in (result.stderr, result.stdout):
        assert not [s for s in secrets if s in text]


def test_the_sqlite_ledger_its_wal_and_written_reports_are_private_to_their_owner(
    tmp_path: Path, year_file: tuple[Path, list[dict[str, Any]]]
) -> None:
    path, events = year_file
    db = tmp_path / "ledger.db"
    assert run("check", str(path), "-f", "jsonl", "--db", f"sqlite:///{db}").returncode == 0
    files = [db, db.with_name("ledger.db-wal"), db.with_name("ledger.db-shm")]
    with sqlite3.connect(db) as held:  # keeps the WAL and shared memory in being
        held.execute("SELECT count(*) FROM ledger_entry").fetchone()
        modes = {f.name: oct(f.stat().st_mode & 0o777) for f in files if f.exists()}
    assert modes and set(modes.values()) == {"0o600"}, modes
    report = tmp_path / "sar.html"
    report.write_text("an older file, readable by all")
    report.chmod(0o644)
    pupil = next(e["data"]["upn"] for e in events if "upn" in e["data"])
    done = run(
        "report",
        "sar",
        "--pupil",
        pupil,
        "--format",
        "html",
        "-o",
        str(report),
        "--db",
        f"sqlite:///{db}",
    )
    assert done.returncode == 0, done.stderr
    assert oct(report.stat().st_mode & 0o777) == "0o600"


def test_an_existing_ledger_readable_by_others_is_made_private_when_opened(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    assert run("db", "upgrade", "--db", f"sqlite:///{db}").returncode == 0
    db.chmod(0o644)
    assert run("ledger", "stats", "--db", f"sqlite:///{db}").returncode == 0
    assert oct(db.stat().st_mode & 0o777) == "0o600"
