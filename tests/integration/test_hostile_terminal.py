"""Hostile text from events, users and forms at the command line: decided, printed as
text (never as markup or escape sequences), and never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factory import census, left, line, referral, upn
from tests.integration.test_ledger_cli import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ESCAPES = "[/x][bold]\x1b[2J\x1b]0;owned\x07\x9b31m\u202e"


def hostile_lines() -> list[bytes]:
    """Every kind of line a careless or hostile MIS has been seen to send."""
    lines = [
        b'{"id":"deep","data":' + b"[" * depth + b"]" * depth + b"}"
        for depth in (40, 255, 300, 1_024)
    ]
    for time in ("0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"):
        lines.append(line(referral(time=time)))
        lines.append(line(left(time=time, left_on=time[:10])))
    for recipient in ("agency:x\r\nBcc: a@example.org", "a" * 100_000, ESCAPES):
        lines.append(line(referral(recipient=recipient)))
    lines.append(json.dumps({"id": ESCAPES, "type": ESCAPES}).encode())
    lines.append(line(census(pupils=[{"upn": upn(1), "dob": "0001-01-01"}])))
    lines.append(line(referral(lawful_basis="consent", consent_ref="C" * 600)))
    lines.append(b'{"id": "dup", "id": "dup2"}')
    lines.append(line(referral()))  # and an ordinary event after them all
    return lines


@pytest.fixture
def hostile_file(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(hostile_lines()) + b"\n")
    return path


@pytest.mark.parametrize("output", ["jsonl", "table"])
def test_check_decides_every_hostile_line_and_prints_no_traceback(
    hostile_file: Path, output: str
) -> None:
    done = run("check", str(hostile_file), "--format", output)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout  # JSON escapes C0
    if output == "table":
        assert "\x9b" not in done.stdout and "\u202e" not in done.stdout
    else:
        decided = [json.loads(x) for x in done.stdout.splitlines()]
        assert [d["line"] for d in decided] == list(range(1, len(hostile_lines()) + 1))
        assert decided[-1]["decision"] == "allowed"


def test_check_with_a_database_records_every_hostile_line(
    hostile_file: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    done = run("check", str(hostile_file), "--format", "jsonl", "--db", url)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == len(hostile_lines())
    stats = run("ledger", "stats", "--db", url)
    assert f"entries: {len(hostile_lines())}" in stats.stdout
    assert run("ledger", "verify", "--db", url).returncode == 0


def test_names_and_reasons_with_markup_and_escapes_print_as_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    events = tmp_path / "breach.jsonl"
    breach = referral(
        lawful_basis="consent",
        special_condition="9.2.a",
        consent_ref="C-1",
        categories=["personal", "medical"],
    )
    events.write_bytes(line(breach) + b"\n")
    assert run("check", str(events), "--db", url, "-f", "jsonl").returncode == 0
    refused = run("users", "add", ESCAPES, "--role", "dpo", "--db", url)  # control characters
    assert refused.returncode == 2 and "control character" in refused.stderr
    assert "\x1b" not in refused.stderr and "Traceback" not in refused.stderr
    steps = [
        ("users", "add", "[/x][bold]markup", "--role", "dpo"),
        ("incidents", "ack", "1", "--by", ESCAPES),
        ("incidents", "assess", "1", "--risk", "high_risk", "--reasons", ESCAPES, "--by", ESCAPES),
    ]
    for step in steps:
        assert run(*step, "--db", url).returncode == 0
    for shown in (
        ("users", "list"),
        ("incidents", "list"),
        ("incidents", "show", "1"),
        ("ledger", "query", "--format", "table"),
        ("ledger", "stats"),
    ):
        done = run(*shown, "--db", url)
        assert done.returncode == 0, (shown, done.stderr)
        assert "Traceback" not in done.stderr
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout, shown
    show = run("incidents", "show", "1", "--db", url).stdout
    assert "[/x][bold]\\x1b[2J" in show
