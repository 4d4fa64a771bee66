"""A pack adopted with ``policy adopt`` reaches every reader, not the writer alone: the
notice is made from it, the notice against practice flags what it changes until a new
notice is published, and a desk already running explains by it, on both databases."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.api.app import FOLLOW_SECONDS, create_api
from pipeline.cli.main import app
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.packs import load_pack, pack_text
from pipeline.pseudonym import pseudonymiser
from pipeline.users import Role, add_user
from tests.factory import line, referral

pytestmark = pytest.mark.integration
runner = CliRunner()
KEY = "cd" * 32
#: A recipient the notice names, which the adopted pack no longer permits.
DROPPED = "agency:hearing-impairment"


def without_hearing_impairment(tmp_path: Path) -> Path:
    document: dict[str, Any] = yaml.safe_load(pack_text()[0])
    del document["recipients"][DROPPED]
    path = tmp_path / "adopted.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    return path


@pytest.fixture
def adopted(db_url: str, tmp_path: Path) -> tuple[str, dict[str, str], Path]:
    """A ledger with one referral and a notice published from the shipped pack, then the
    pack without the hearing impairment service adopted; the URL, the environment and
    the adopted pack's file."""
    ledger = Ledger.open(db_url)
    schema.upgrade(ledger.engine)
    ledger.engine.dispose()
    env = {"SHARING_AUDIT_PSEUDONYM_KEY": KEY, "SHARING_AUDIT_DATABASE_URL": db_url}
    events = tmp_path / "events.jsonl"
    events.write_bytes(line(referral(recipient="la:850")) + b"\n")
    path = without_hearing_impairment(tmp_path)
    for command in (
        ["check", str(events), "--db", db_url],
        ["notice", "publish", "--db", db_url, "--from", "2020-01-01", "--by", "Dana"],
        ["policy", "adopt", str(path), "--db", db_url],
    ):
        done = runner.invoke(app, command, env=env)
        assert done.exit_code == 0, done.output
    return db_url, env, path


def test_the_notice_is_made_from_the_adopted_pack(
    adopted: tuple[str, dict[str, str], Path],
) -> None:
    url, env, path = adopted
    made = runner.invoke(app, ["notice", "--format", "md", "--db", url], env=env)
    assert made.exit_code == 0, made.output
    assert load_pack(str(path)).version in made.stdout
    assert DROPPED not in made.stdout and "Hearing impairment" not in made.stdout


def test_the_notice_check_flags_what_the_adoption_changed_until_a_notice_is_published(
    adopted: tuple[str, dict[str, str], Path],
) -> None:
    url, env, _ = adopted
    checked = runner.invoke(app, ["notice", "check", "--db", url, "-f", "json"], env=env)
    assert "a recipient the pack no longer permits: Hearing impairment" in checked.stdout
    published = runner.invoke(app, ["notice", "publish", "--db", url, "--by", "Dana"], env=env)
    assert published.exit_code == 0, published.output
    again = runner.invoke(app, ["notice", "check", "--db", url, "-f", "json"], env=env)
    assert "no longer permits" not in again.stdout


def test_a_desk_started_before_the_adoption_explains_by_the_adopted_pack(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.open(db_url)
    schema.upgrade(ledger.engine)
    desk = TestClient(
        create_api(ledger, policy=load_pack(), pseudonym=pseudonymiser(bytes.fromhex(KEY)))
    )
    token = add_user(ledger, "Dana", Role.DPO)
    assert desk.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    assert "Hearing impairment" in desk.get("/desk/notice").text
    path = without_hearing_impairment(tmp_path)
    env = {"SHARING_AUDIT_PSEUDONYM_KEY": KEY}
    done = runner.invoke(app, ["policy", "adopt", str(path), "--db", db_url], env=env)
    assert done.exit_code == 0, done.output
    later = time.monotonic() + FOLLOW_SECONDS  # the desk looks again a second on
    monkeypatch.setattr("pipeline.api.app.time.monotonic", lambda: later)
    page = desk.get("/desk/notice").text
    assert load_pack(str(path)).version[:16] in page
    assert "Hearing impairment" not in page
