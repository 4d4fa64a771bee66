"""`ledger rotate-key`: a ledger written before migration 0011 (pseudonyms made from UPNs
under the deployment's key) gets a new random key; afterwards the old key is gone or
refused, nothing hashed changed, old pupils are found through their rows alone, and an
erased one is found by no key and no UPN. On SQLite (the key file beside the ledger,
replaced in place, surviving a crash at any step) and on PostgreSQL (the key in the
settings, written for the operator to deploy)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, func, select, update
from typer.testing import CliRunner, Result

from agents import writer as writer_process
from agents.writer import Failed
from pipeline.api.app import create_api
from pipeline.cli.main import app
from pipeline.engine import Position
from pipeline.keyfiles import pending_key_file, write_new_key_file
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.privacy.erasure import erase
from pipeline.ledger.privacy.rotation import RotationRefused, rotate_key
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.dialects import SQLITE
from pipeline.ledger.storage.store import ENTRY, IDENTITY, PUPIL, Ledger
from pipeline.ledger.writing import ingest
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.keys import (
    FINGERPRINT,
    META,
    KeyRefused,
    bind_key,
    legacy_pupils,
    meta_value,
)
from pipeline.ledger.writing.pupils import NOBODY, Identity, finder, identities_held
from pipeline.packs import load_pack
from pipeline.pseudonym import Pseudonymiser, pseudonymiser, read_key_file
from pipeline.users import Role, add_user
from tests.factory import line, referral, upn
from tests.integration.breaches import KEY, ledger_with_breaches
from tests.integration.test_plain_words import raw_values_in

pytestmark = pytest.mark.integration
OLD = pseudonymiser(KEY)
runner = CliRunner()


def _made_from_upns(connection: Connection, upns: Iterable[str]) -> dict[str, Identity]:
    """How the writer named pupils before migration 0011: HMAC of the UPN under the key."""
    wanted = list(dict.fromkeys(upns))
    found = identities_held(connection, wanted)
    return {u: found.get(u) or Identity(OLD(u), stored=False) for u in wanted}


@dataclass
class Old:
    """A ledger written before 0011, and how this test's commands reach its key."""

    url: str
    key_file: Path | None  # SQLite: beside the ledger; PostgreSQL: in the settings
    settings: pytest.MonkeyPatch

    @property
    def ledger(self) -> Ledger:
        return Ledger.open(self.url)

    def run(self, *args: str, code: int = 0) -> Result:
        done = runner.invoke(app, [*args, "--db", self.url])
        said = done.stdout + done.stderr
        assert done.exit_code == code and "Traceback" not in said, said
        return done

    def rotate(self, code: int = 0, new_key_file: Path | None = None) -> Result:
        extra = [] if new_key_file is None else ["--new-key-file", str(new_key_file)]
        return self.run("ledger", "rotate-key", "--by", "dana", *extra, code=code)

    def deploy(self, new_key_file: Path | None) -> None:
        """What the operator does after rotating a configured key: set the new one."""
        if new_key_file is not None:
            self.settings.setenv("SHARING_AUDIT_PSEUDONYM_KEY", new_key_file.read_text().strip())

    def key_now(self, new_key_file: Path | None = None) -> Pseudonymiser:
        """The key the ledger uses after a rotation: its file's, or the one written."""
        path = self.key_file or new_key_file
        assert path is not None
        return pseudonymiser(read_key_file(path))


def _written_before_0011(url: str, folder: Path, settings: pytest.MonkeyPatch) -> Old:
    """The ledger of ``ledger_with_breaches`` as the writer made it before 0011 (three
    pupils named by HMAC of their UPN), one identity row from before MACs (no MAC); its
    key in a file beside a SQLite ledger, else in the settings."""
    with settings.context() as before:
        before.setattr(ingest, "resolved", _made_from_upns)
        ledger = ledger_with_breaches(url, load_pack())
    with ledger.engine.begin() as connection:
        connection.execute(update(IDENTITY).where(IDENTITY.c.upn == upn(3)).values(mac=None))
    settings.delenv("SHARING_AUDIT_PSEUDONYM_KEY", raising=False)
    key_file = None
    if ledger.dialect is SQLITE:
        key_file = folder / "ledger.db.key"
        write_new_key_file(key_file, KEY)
    else:
        settings.setenv("SHARING_AUDIT_PSEUDONYM_KEY", KEY.hex())
    bind_key(ledger, OLD)
    return Old(url, key_file, settings)


@pytest.fixture
def old(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Old:
    return _written_before_0011(db_url, tmp_path, monkeypatch)


@pytest.fixture
def sqlite_old(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Old:
    return _written_before_0011(sqlite_url, tmp_path, monkeypatch)


@pytest.fixture
def configured(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Old:
    return _written_before_0011(pg_url, tmp_path, monkeypatch)


def _leaves(ledger: Ledger) -> list[tuple[int, str]]:
    with ledger.engine.connect() as connection:
        return [(r.seq, r.hash) for r in connection.execute(select(ENTRY.c.seq, ENTRY.c.hash))]


def _rotations(ledger: Ledger) -> list[dict[str, object]]:
    with ledger.engine.connect() as connection:
        found = (
            select(ENTRY.c.details)
            .where(ENTRY.c.kind == EntryKind.KEY_ROTATED)
            .order_by(ENTRY.c.seq)
        )
        return [orjson.loads(d) for d in connection.execute(found).scalars()]


def _verified(ledger: Ledger, key: Pseudonymiser) -> None:
    with ledger.engine.connect() as connection:
        result = verify(connection, key)
    assert result.ok, (result.fault_seq, result.fault)


# -- what a rotation does, on both databases ---------------------------------------------


def test_the_old_key_remakes_every_pupil_of_a_ledger_written_before_0011(old: Old) -> None:
    with old.ledger.engine.connect() as connection:
        assert legacy_pupils(connection, OLD) == 3


def test_rotation_changes_no_leaf_and_the_ledger_verifies_under_the_new_key(
    old: Old, tmp_path: Path
) -> None:
    before = _leaves(old.ledger)
    new_file = None if old.key_file else tmp_path / "new.key"
    old.rotate(new_key_file=new_file)
    after = _leaves(old.ledger)
    assert after[: len(before)] == before and len(after) == len(before) + 1
    _verified(old.ledger, old.key_now(new_file))


def test_the_rotation_is_an_entry_naming_who_and_both_keys_by_fingerprint_alone(
    old: Old, tmp_path: Path
) -> None:
    new_file = None if old.key_file else tmp_path / "new.key"
    said = old.rotate(new_key_file=new_file).stdout
    new = old.key_now(new_file)
    (entry,) = _rotations(old.ledger)
    assert entry == {
        "by": "dana",
        "old_key": OLD.fingerprint[:16],
        "new_key": new.fingerprint[:16],
        "resealed": 3,
        "freed": 3,
    }
    assert "3 identity rows sealed again" in said and "3 pupils recorded before" in said
    with old.ledger.engine.connect() as connection:
        assert meta_value(connection, FINGERPRINT) == new.fingerprint
    assert KEY.hex() not in said and read_key_file(old.key_file or new_file).hex() not in said  # type: ignore[arg-type]


def test_old_pupils_are_still_found_by_upn_and_in_their_subject_access_report(
    old: Old, tmp_path: Path
) -> None:
    pupil = finder(old.ledger)(upn(1))
    new_file = None if old.key_file else tmp_path / "new.key"
    old.rotate(new_key_file=new_file)
    old.deploy(new_file)
    assert finder(old.ledger)(upn(1)) == pupil == OLD(upn(1))
    found = old.run("ledger", "query", "--pupil", upn(1), "--format", "jsonl").stdout
    assert len(found.splitlines()) == 1 and pupil in found
    sar = old.run("report", "sar", "--pupil", upn(1)).stdout
    assert "No entries" not in sar and "medical" in sar.lower()


def test_after_rotation_and_erasure_neither_key_nor_upn_finds_the_old_pupil(
    old: Old, tmp_path: Path
) -> None:
    new_file = None if old.key_file else tmp_path / "new.key"
    old.rotate(new_key_file=new_file)
    new = old.key_now(new_file)
    erase(old.ledger, finder(old.ledger)(upn(1)), by="dpo", reason="asked", rule="request")
    assert finder(old.ledger)(upn(1)) == NOBODY
    with old.ledger.engine.connect() as connection:
        named = set(connection.execute(select(PUPIL.c.pupil_key)).scalars())
        assert legacy_pupils(connection, new) == 0
    assert new(upn(1)) not in named  # the key the deployment still holds remakes nothing
    _verified(old.ledger, new)


def test_a_writer_on_the_old_key_refuses_after_rotation_naming_the_fix(
    old: Old, tmp_path: Path
) -> None:
    """A worker started before the rotation writes nothing more with the retired key."""
    writer = LedgerWriter(old.ledger, load_pack(), OLD)
    new_file = None if old.key_file else tmp_path / "new.key"
    old.rotate(new_key_file=new_file)
    record = (line(referral(pupils=[{"upn": upn(7)}])), Position.line("late", 1))
    with pytest.raises(KeyRefused, match="retired by `sharing-audit ledger rotate-key`") as no:
        writer.write([record])
    assert "SHARING_AUDIT_PSEUDONYM_KEY to the new key" in str(no.value)
    assert len(_leaves(old.ledger)) == 4  # three decisions and the rotation; nothing more
    with pytest.raises(KeyRefused, match="retired"):
        bind_key(old.ledger, OLD)  # nor does one started afterwards


def test_a_second_rotation_retires_the_first_new_key(old: Old, tmp_path: Path) -> None:
    first = None if old.key_file else tmp_path / "first.key"
    second = None if old.key_file else tmp_path / "second.key"
    old.rotate(new_key_file=first)
    middle = old.key_now(first)
    old.deploy(first)
    said = old.rotate(new_key_file=second).stdout
    assert "0 pupils recorded before" in said  # the first rotation freed them all
    newest = old.key_now(second)
    assert [r["new_key"] for r in _rotations(old.ledger)] == [
        middle.fingerprint[:16],
        newest.fingerprint[:16],
    ]
    _verified(old.ledger, newest)
    with pytest.raises(KeyRefused, match="retired"):
        bind_key(old.ledger, middle)


def test_an_edited_identity_row_is_not_sealed_again_and_nothing_changes(
    old: Old, tmp_path: Path
) -> None:
    """Sealing every row under a new key must not launder an edit into a valid MAC."""
    with old.ledger.engine.begin() as connection:
        connection.execute(
            update(IDENTITY).where(IDENTITY.c.upn == upn(2)).values(dob="2001-01-01")
        )
    before = _leaves(old.ledger)
    new_file = None if old.key_file else tmp_path / "new.key"
    done = old.rotate(code=2, new_key_file=new_file)
    assert "changed behind the ledger's back" in done.stderr
    assert _leaves(old.ledger) == before
    with old.ledger.engine.connect() as connection:
        assert meta_value(connection, FINGERPRINT) == OLD.fingerprint
    assert not (new_file or pending_key_file(old.key_file)).exists()  # type: ignore[arg-type]


def test_stats_names_the_pupils_the_current_key_remakes_until_rotation(
    old: Old, tmp_path: Path
) -> None:
    said = "3 pupils' pseudonyms are remade by the current key: run `sharing-audit ledger "
    assert said in old.run("ledger", "stats").stdout.replace("\n", " ")
    new_file = None if old.key_file else tmp_path / "new.key"
    old.rotate(new_key_file=new_file)
    old.deploy(new_file)
    assert "remade by the current key" not in old.run("ledger", "stats").stdout


def test_the_rotation_is_listed_by_kind_in_query(old: Old, tmp_path: Path) -> None:
    new_file = None if old.key_file else tmp_path / "new.key"
    old.rotate(new_key_file=new_file)
    old.deploy(new_file)
    found = old.run("ledger", "query", "--kind", EntryKind.KEY_ROTATED, "--format", "jsonl").stdout
    (row,) = [orjson.loads(x) for x in found.splitlines()]
    assert row["details"]["by"] == "dana"
    table = old.run("ledger", "query", "--kind", EntryKind.KEY_ROTATED).stdout
    assert "key_rotated: by dana" in table


# -- SQLite: the key file replaced in place, whatever stops it ---------------------------


def test_the_old_key_files_bytes_are_overwritten_not_just_unlinked(
    sqlite_old: Old, tmp_path: Path
) -> None:
    assert sqlite_old.key_file is not None
    copy = tmp_path / "hard-link"
    os.link(sqlite_old.key_file, copy)  # the old file's blocks, as a backup might share
    sqlite_old.rotate()
    assert copy.read_bytes().strip(b"\0") == b""
    assert read_key_file(sqlite_old.key_file) != KEY
    assert sqlite_old.key_file.stat().st_mode & 0o777 == 0o600
    assert not pending_key_file(sqlite_old.key_file).exists()


def _stopped_after_commit(old: Old) -> Pseudonymiser:
    """A rotation that died between its commit and the swap of the key files."""
    assert old.key_file is not None
    pending = pending_key_file(old.key_file)
    rotate_key(
        old.ledger,
        OLD,
        os.urandom(32),
        by="dana",
        keep=lambda key: write_new_key_file(pending, key),
    )
    return pseudonymiser(read_key_file(pending))


def test_any_command_after_a_crash_between_commit_and_swap_finishes_the_swap(
    sqlite_old: Old,
) -> None:
    new = _stopped_after_commit(sqlite_old)
    assert read_key_file(sqlite_old.key_file) == KEY  # type: ignore[arg-type]
    sqlite_old.run("ledger", "query", "--pupil", upn(1))
    assert pseudonymiser(read_key_file(sqlite_old.key_file)).fingerprint == new.fingerprint  # type: ignore[arg-type]
    assert not pending_key_file(sqlite_old.key_file).exists()  # type: ignore[arg-type]
    assert "ledger verified" in sqlite_old.run("ledger", "verify").stdout


def test_a_crash_while_the_old_key_file_was_being_overwritten_is_finished_too(
    sqlite_old: Old,
) -> None:
    assert sqlite_old.key_file is not None
    new = _stopped_after_commit(sqlite_old)
    sqlite_old.key_file.write_bytes(bytes(65))  # zeroed, not yet replaced
    assert "ledger verified" in sqlite_old.run("ledger", "verify").stdout
    assert sqlite_old.key_now().fingerprint == new.fingerprint


def test_rotate_key_again_after_that_crash_finishes_it_and_rotates_no_more(
    sqlite_old: Old,
) -> None:
    new = _stopped_after_commit(sqlite_old)
    said = sqlite_old.rotate().stdout
    assert "finished the key rotation that had stopped" in said
    assert len(_rotations(sqlite_old.ledger)) == 1
    assert sqlite_old.key_now().fingerprint == new.fingerprint


def test_a_rotation_that_died_before_its_commit_leaves_the_old_key_and_no_new_one(
    sqlite_old: Old,
) -> None:
    assert sqlite_old.key_file is not None
    pending = pending_key_file(sqlite_old.key_file)

    def written_then_died(key: bytes) -> None:
        write_new_key_file(pending, key)
        raise SystemExit("killed before the commit")

    with pytest.raises(SystemExit):
        rotate_key(sqlite_old.ledger, OLD, os.urandom(32), by="dana", keep=written_then_died)
    assert pending.exists()
    sqlite_old.run("ledger", "query", "--pupil", upn(1))
    assert not pending.exists() and read_key_file(sqlite_old.key_file) == KEY
    assert _rotations(sqlite_old.ledger) == []


def test_a_ledger_holding_no_pupil_rotates(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHARING_AUDIT_PSEUDONYM_KEY", raising=False)
    assert runner.invoke(app, ["db", "upgrade", "--db", sqlite_url]).exit_code == 0
    done = runner.invoke(app, ["ledger", "rotate-key", "--db", sqlite_url])
    assert done.exit_code == 0, done.stdout + done.stderr
    assert "0 identity rows sealed again" in done.stdout
    done = runner.invoke(app, ["ledger", "verify", "--db", sqlite_url])
    assert done.exit_code == 0 and "not checked" not in done.stdout, done.stdout


def test_a_new_key_file_is_refused_for_a_ledger_keyed_by_its_file(
    sqlite_old: Old, tmp_path: Path
) -> None:
    done = sqlite_old.rotate(code=2, new_key_file=tmp_path / "elsewhere.key")
    assert "replaced in place" in done.stderr
    assert not (tmp_path / "elsewhere.key").exists()


# -- a key in the settings (PostgreSQL): written for the operator ------------------------


def test_a_configured_key_needs_a_file_for_the_new_one(configured: Old) -> None:
    done = configured.rotate(code=2)
    assert "--new-key-file PATH" in done.stderr
    assert _rotations(configured.ledger) == []


def test_the_new_key_file_is_never_overwritten(configured: Old, tmp_path: Path) -> None:
    taken = tmp_path / "new.key"
    taken.write_text("someone else's\n")
    done = configured.rotate(code=2, new_key_file=taken)
    assert "exists" in done.stderr and taken.read_text() == "someone else's\n"
    assert _rotations(configured.ledger) == []


def test_the_new_key_is_written_for_the_owner_alone_and_the_operator_told_what_to_do(
    configured: Old, tmp_path: Path
) -> None:
    new_file = tmp_path / "new.key"
    said = configured.rotate(new_key_file=new_file).stdout.replace("\n", " ")
    assert new_file.stat().st_mode & 0o777 == 0o600
    assert "set SHARING_AUDIT_PSEUDONYM_KEY to its contents on every worker" in said
    assert "older versions" in said and "shell histories" in said
    done = configured.run("ledger", "query", "--pupil", upn(1), code=2)  # still the old key
    assert "retired by `sharing-audit ledger rotate-key`" in done.stderr


def test_the_identity_rows_count_matches_what_was_resealed(old: Old, tmp_path: Path) -> None:
    new_file = None if old.key_file else tmp_path / "new.key"
    old.rotate(new_key_file=new_file)
    with old.ledger.engine.connect() as connection:
        rows = connection.execute(select(func.count()).select_from(IDENTITY)).scalar_one()
        unsealed = connection.execute(
            select(func.count()).select_from(IDENTITY).where(IDENTITY.c.mac.is_(None))
        ).scalar_one()
    assert (rows, unsealed) == (3, 0)  # the row from before MACs is sealed now too


def test_the_same_key_is_refused_as_its_own_successor(old: Old) -> None:
    with pytest.raises(RotationRefused, match="the new key is the old one"):
        rotate_key(old.ledger, OLD, KEY, by="dana", keep=lambda key: None)


def test_verify_names_the_rotation_when_the_recorded_fingerprint_is_swapped(
    old: Old, tmp_path: Path
) -> None:
    """An attacker's own key recorded, and every row sealed under it, passes every check
    run with that key: but not the rotation entry's record of which key it made."""
    new_file = None if old.key_file else tmp_path / "new.key"
    old.rotate(new_key_file=new_file)
    (rotated,) = _entries_of_kind(old.ledger, EntryKind.KEY_ROTATED)
    theirs = pseudonymiser(b"\x07" * 32)
    with old.ledger.engine.begin() as connection:
        connection.execute(
            update(META).where(META.c.name == FINGERPRINT).values(value=theirs.fingerprint)
        )
        rows = connection.execute(select(IDENTITY.c.pupil_key, IDENTITY.c.upn, IDENTITY.c.dob))
        for key, pupil, dob in rows.all():
            connection.execute(
                update(IDENTITY)
                .where(IDENTITY.c.pupil_key == key)
                .values(mac=theirs.identity_mac(key, pupil, dob))
            )
    with old.ledger.engine.connect() as connection:
        result = verify(connection, theirs)
    assert (result.ok, result.fault_seq) == (False, rotated)
    assert "changed behind the ledger's back" in (result.fault or "")


def _entries_of_kind(ledger: Ledger, kind: str) -> list[int]:
    with ledger.engine.connect() as connection:
        return list(connection.execute(select(ENTRY.c.seq).where(ENTRY.c.kind == kind)).scalars())


def test_the_desk_shows_the_rotation_in_plain_words(sqlite_old: Old) -> None:
    sqlite_old.rotate()
    (seq,) = _entries_of_kind(sqlite_old.ledger, EntryKind.KEY_ROTATED)
    ledger = sqlite_old.ledger
    token = add_user(ledger, "Dana (DPO)", Role.DPO)
    client = TestClient(create_api(ledger, pseudonym=sqlite_old.key_now()))
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    for address in (f"/desk/entries/{seq}", f"/desk/search?kind={EntryKind.KEY_ROTATED}&go=1"):
        html = client.get(address).text
        assert "pseudonym key replaced" in html, address
        assert raw_values_in(html) == [], address


def test_a_running_worker_on_the_old_key_waits_and_blames_no_record(
    sqlite_old: Old, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's writer process bound the old key before the rotation: its next batch
    fails as a database that is not ready does (the sink waits and retries, saying why),
    never as a bad record (which the sink would record as rejected)."""
    monkeypatch.setattr(
        writer_process, "_writer", LedgerWriter(sqlite_old.ledger, load_pack(), OLD)
    )
    monkeypatch.setattr(writer_process, "_key_bound", True)  # bound at its start
    sqlite_old.rotate()
    record = (line(referral(pupils=[{"upn": upn(8)}])), Position("sharing.referral", 0, 2))
    failed = writer_process.write([record])
    assert isinstance(failed, Failed) and failed.unavailable
    assert "retired by `sharing-audit ledger rotate-key`" in failed.error
    assert len(_leaves(sqlite_old.ledger)) == 4  # three, and the rotation
