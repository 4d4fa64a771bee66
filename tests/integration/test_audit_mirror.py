"""``sharing-audit audit verify --tiles DIR [--from FILE]`` (issue 33): an auditor who
mirrors the log's tiles checks, each month, only what the log added since the checkpoint
they verified last, on a mirror of what a real ledger serves; and Go's tlog proves the
same two checkpoints consistent over the same tiles."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.ledger.storage.store import Ledger
from pipeline.transparency.note import Checkpoint, Note
from pipeline.transparency.tiles import Tile, tiles_for
from tests.integration.test_transparency_interop import SOURCE, go_built, go_says
from tests.integration.test_verifiable_log import ENV, count, events, ledger_with, log, record
from tests.mirrors import mirror_of_ledger

pytestmark = pytest.mark.integration
runner = CliRunner()


def audit_verify(*args: str | Path) -> tuple[int, str]:
    done = runner.invoke(app, ["audit", "verify", *map(str, args)], env=ENV)
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    return done.exit_code, done.output


def signed_now(url: str, folder: Path, name: str) -> Path:
    """The log's checkpoint, signed now if the tree grew, kept in ``folder/name``."""
    log("checkpoint", url=url)
    path = folder / name
    path.write_bytes(log("checkpoint", url=url))
    return path


def mirrored(ledger: Ledger, folder: Path, *sizes: int) -> Path:
    with ledger.engine.connect() as connection:
        return mirror_of_ledger(folder / "mirror", connection, sizes)


@pytest.fixture
def vkey(tmp_path: Path, sqlite_url: str) -> Path:
    path = tmp_path / "log.vkey"
    path.write_bytes(log("vkey", url=sqlite_url))
    return path


def grown(url: str, folder: Path) -> tuple[Ledger, Path, int, Path]:
    """A ledger whose checkpoint the auditor verified from their mirror (kept in
    ``folder/state``), grown since, the mirror fetched again; and the new checkpoint."""
    ledger = ledger_with(url, events(150))
    old = signed_now(url, folder, "old-checkpoint")
    size = count(ledger)
    record(ledger, events(40, seed=8), first=10_000)
    new = signed_now(url, folder, "checkpoint")
    mirrored(ledger, folder, size, count(ledger))
    (folder / "state").mkdir()
    (folder / "state" / "checkpoint").write_bytes(old.read_bytes())
    return ledger, new, size, folder / "mirror"


def test_a_grown_mirror_is_checked_from_the_checkpoint_kept_and_the_new_one_kept(
    db_url: str, tmp_path: Path, vkey: Path
) -> None:
    ledger, new, old, mirror = grown(db_url, tmp_path)
    assert old > 256  # the old tree has full tiles the check does not read
    state = tmp_path / "state"
    status, said = audit_verify(new, "--vkey", vkey, "--state", state, "--tiles", mirror)
    assert status == 0, said
    assert f"at size {count(ledger)}; kept in {state}" in said
    assert f"from the checkpoint of size {old:,} kept in {state}" in said
    assert f"not read again: the {old:,} entries it covers" in said
    assert f"{count(ledger) - old:,} new entries in" in said
    assert (state / "checkpoint").read_bytes() == new.read_bytes()


def test_a_first_check_of_a_mirror_reads_every_entry(
    db_url: str, tmp_path: Path, vkey: Path
) -> None:
    ledger = ledger_with(db_url, events(60))
    note = signed_now(db_url, tmp_path, "checkpoint")
    mirror = mirrored(ledger, tmp_path, count(ledger))
    state = tmp_path / "state"
    status, said = audit_verify(note, "--vkey", vkey, "--state", state, "--tiles", mirror)
    assert status == 0, said
    assert f"from the start: no checkpoint kept in {state}" in said
    assert f"{count(ledger):,} new entries" in said


def test_from_a_checkpoint_given_the_check_starts_there(
    db_url: str, tmp_path: Path, vkey: Path
) -> None:
    _, new, old, mirror = grown(db_url, tmp_path)
    empty = tmp_path / "fresh-state"
    given = tmp_path / "old-checkpoint"
    status, said = audit_verify(
        new, "--vkey", vkey, "--state", empty, "--tiles", mirror, "--from", given
    )
    assert status == 0, said
    assert f"from the checkpoint of size {old:,} given with --from" in said


def test_a_rollback_to_before_the_kept_checkpoint_is_refused(
    db_url: str, tmp_path: Path, vkey: Path
) -> None:
    _, new, _, mirror = grown(db_url, tmp_path)
    state = tmp_path / "state"
    (state / "checkpoint").write_bytes(new.read_bytes())
    older = tmp_path / "old-checkpoint"
    status, said = audit_verify(older, "--vkey", vkey, "--state", state, "--tiles", mirror)
    assert status == 1 and "the log was rolled back" in said
    assert (state / "checkpoint").read_bytes() == new.read_bytes()


def test_a_poisoned_mirror_is_refused_in_one_line(db_url: str, tmp_path: Path, vkey: Path) -> None:
    ledger, new, old, mirror = grown(db_url, tmp_path)
    edge = old // 256
    bundle = mirror / Tile(None, edge, min(256, count(ledger) - edge * 256)).path
    bundle.unlink()
    os.symlink("/etc/passwd", bundle)
    state = tmp_path / "state"
    status, said = audit_verify(new, "--vkey", vkey, "--state", state, "--tiles", mirror)
    assert status == 1, said
    assert said.count("\n") == 1 and "leads outside the mirror" in said


def test_from_without_a_mirror_or_a_mirror_that_is_no_folder_is_a_usage_error(
    tmp_path: Path, vkey: Path
) -> None:
    note = tmp_path / "checkpoint"
    note.write_bytes(b"whatever")
    status, said = audit_verify(note, "--vkey", vkey, "--state", tmp_path, "--from", note)
    assert status == 2 and "--from is for checking a mirror: give --tiles DIR too" in said
    status, said = audit_verify(note, "--vkey", vkey, "--state", tmp_path, "--tiles", note)
    assert status == 2 and f"--tiles {note}: not a folder" in said


# -- Go's tlog over the same tiles ------------------------------------------------------------


def tiles_of(mirror: Path, size: int) -> dict[str, str]:
    return {
        tile.path: base64.b64encode((mirror / tile.path).read_bytes()).decode()
        for tile in tiles_for(size)
    }


@pytest.mark.slow
def test_go_proves_the_new_checkpoint_consistent_with_the_old_over_the_mirror(
    db_url: str, tmp_path: Path, vkey: Path
) -> None:
    ledger, new, old_size, mirror = grown(db_url, tmp_path)
    old = Checkpoint.from_body(Note.parse((tmp_path / "old-checkpoint").read_bytes()).text)
    go = go_built(SOURCE, tmp_path)
    given = {
        "vkey": vkey.read_text().strip(),
        "checkpoint": new.read_text(),
        "tiles": tiles_of(mirror, count(ledger)),
        "prove_from": [{"old": old_size, "old_root": base64.b64encode(old.root).decode()}],
    }
    assert go_says(go, given) == "ok"
    other_root = base64.b64encode(bytes(32)).decode()
    forked = {**given, "prove_from": [{"old": old_size, "old_root": other_root}]}
    assert go_says(go, forked).startswith(f"consistency from {old_size}")
