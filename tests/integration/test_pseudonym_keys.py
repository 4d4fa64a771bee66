"""A ledger is only ever used with the pseudonym key it was written with: another key, or
none, is refused with a message saying which, never answered with nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.api.app import create_api
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.keys import KeyRefused
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from tests.factory import line, referral, upn
from tests.integration.breaches import KEY, breach_desk, ledger_with_breaches
from tests.integration.test_ledger_cli import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OTHER_KEY = "ab" * 32


@pytest.fixture
def written(tmp_path: Path) -> tuple[str, str]:
    """A SQLite ledger written by `check --db` with the key it made beside itself, and a
    pupil in it."""
    db = tmp_path / "ledger.db"
    events = tmp_path / "events.jsonl"
    events.write_bytes(line(referral(pupils=[{"upn": upn(9)}])) + b"\n")
    assert run("check", str(events), "--db", f"sqlite:///{db}", "-f", "jsonl").returncode == 0
    return f"sqlite:///{db}", upn(9)


def test_another_key_is_refused_naming_the_fingerprints(written: tuple[str, str]) -> None:
    url, pupil = written
    for command in (("ledger", "query", "--pupil", pupil), ("report", "sar", "--pupil", pupil)):
        done = run(*command, "--db", url, env={"SHARING_AUDIT_PSEUDONYM_KEY": OTHER_KEY})
        assert done.returncode == 2, command
        assert "written with another pseudonym key (fingerprint" in done.stderr
        assert "Traceback" not in done.stderr and OTHER_KEY not in done.stderr


def test_the_right_key_finds_the_pupil(written: tuple[str, str]) -> None:
    url, pupil = written
    done = run("ledger", "query", "--pupil", pupil, "--format", "jsonl", "--db", url)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1


def test_a_missing_key_file_is_refused_and_no_new_key_is_made(
    written: tuple[str, str], tmp_path: Path
) -> None:
    url, pupil = written
    key_file = tmp_path / "ledger.db.key"
    key_file.unlink()
    done = run("ledger", "query", "--pupil", pupil, "--db", url)
    assert done.returncode == 2
    assert "no pseudonym key" in done.stderr and "restore it" in done.stderr
    assert not key_file.exists()


def test_a_ledger_written_before_fingerprints_is_checked_by_its_identities(
    written: tuple[str, str],
) -> None:
    url, pupil = written
    ledger = Ledger.open(url)
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM ledger_meta WHERE name LIKE 'pseudonym%'")
    other = {"SHARING_AUDIT_PSEUDONYM_KEY": OTHER_KEY}
    done = run("ledger", "query", "--pupil", pupil, "--db", url, env=other)
    assert done.returncode == 2 and "pseudonymised with another key" in done.stderr


def test_the_desk_refuses_to_serve_a_ledger_on_another_key(sqlite_url: str) -> None:
    ledger = ledger_with_breaches(sqlite_url, load_pack())
    breach_desk(ledger)  # the key it was written with: bound
    with pytest.raises(KeyRefused):
        create_api(ledger, pseudonym=pseudonymiser(bytes.fromhex(OTHER_KEY)))
    assert pseudonymiser(KEY).fingerprint != pseudonymiser(bytes.fromhex(OTHER_KEY)).fingerprint


def test_verify_checks_identities_with_the_key_and_says_when_it_cannot(
    written: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = written
    done = run("ledger", "verify", "--db", url)
    assert done.returncode == 0 and "not checked" not in done.stdout
    (tmp_path / "ledger.db.key").unlink()
    done = run("ledger", "verify", "--db", url)
    assert done.returncode == 0 and "identity rows not checked" in done.stdout
