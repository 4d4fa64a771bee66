"""``ledger verify --from CHECKPOINT`` (issue 33): an auditor returning each month checks
only what came after the checkpoint verified last time, and still catches every change
made since, and any change to what that checkpoint covered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.ledger.storage.store import Ledger
from pipeline.transparency.merkle import subtrees
from tests.integration.test_ledger_contract import drop_triggers
from tests.integration.test_verifiable_log import (
    ENV,
    LOG_KEY,
    count,
    events,
    ledger_with,
    log,
    record,
)

pytestmark = pytest.mark.integration
runner = CliRunner()


def kept_checkpoint(url: str, folder: Path) -> Path:
    """The log's current checkpoint, signed now and kept as an auditor keeps it."""
    log("checkpoint", url=url)
    kept = folder / "checkpoint"
    kept.write_bytes(log("checkpoint", url=url))
    return kept


def verify_from(url: str, kept: Path, env: dict[str, str] = ENV) -> tuple[int, str]:
    done = runner.invoke(app, ["ledger", "verify", "--db", url, "--from", str(kept)], env=env)
    return done.exit_code, done.output


def grown_ledger(url: str, folder: Path) -> tuple[Ledger, Path, int]:
    """A ledger verified up to a checkpoint kept outside, then grown past it."""
    ledger = ledger_with(url, events(40))
    kept = kept_checkpoint(url, folder)
    old = count(ledger)
    record(ledger, events(30, seed=8), first=10_000)
    log("checkpoint", url=url)
    return ledger, kept, old


def tamper(ledger: Ledger, *sql: str, **values: object) -> None:
    with ledger.engine.begin() as connection:
        drop_triggers(connection, ledger.dialect)
        for statement in sql:
            connection.execute(text(statement), values)


def test_only_the_entries_after_the_checkpoint_are_read_and_they_verify(
    db_url: str, tmp_path: Path
) -> None:
    ledger, kept, old = grown_ledger(db_url, tmp_path)
    status, said = verify_from(db_url, kept)
    assert status == 0, said
    assert f"{count(ledger) - old} entries after it" in said
    assert f"head seq {count(ledger)}" in said
    assert f"not read again: the {old} entries it covers" in said


def test_an_entry_after_the_checkpoint_edited_is_found(db_url: str, tmp_path: Path) -> None:
    ledger, kept, old = grown_ledger(db_url, tmp_path)
    tamper(ledger, f"UPDATE ledger_entry SET recipient = 'dfe' WHERE seq = {old + 5}")
    status, said = verify_from(db_url, kept)
    assert status == 1 and f"at seq {old + 5}" in said and "content changed" in said


def test_a_tree_node_after_the_checkpoint_edited_is_found(db_url: str, tmp_path: Path) -> None:
    ledger, kept, old = grown_ledger(db_url, tmp_path)
    level_4 = (count(ledger) >> 4) - 1
    assert level_4 << 4 >= old  # a node wholly after the checkpoint
    tamper(
        ledger, f"UPDATE tree_node SET hash = :h WHERE level = 4 AND idx = {level_4}", h=bytes(32)
    )
    status, said = verify_from(db_url, kept)
    assert status == 1 and f"level 4, index {level_4}" in said


def test_a_tree_node_after_the_checkpoint_removed_is_named_itself(
    db_url: str, tmp_path: Path
) -> None:
    """Not the first node the new entries complete, but the one missing."""
    ledger, kept, old = grown_ledger(db_url, tmp_path)
    level_4 = (count(ledger) >> 4) - 1
    assert (level_4 - 1) << 4 >= old  # another node of the level is made after it, first
    tamper(ledger, f"DELETE FROM tree_node WHERE level = 4 AND idx = {level_4}")
    status, said = verify_from(db_url, kept)
    assert status == 1 and f"lacks a node at level 4, index {level_4}" in said


def test_history_the_checkpoint_covers_rewritten_is_found_without_reading_it_all(
    db_url: str, tmp_path: Path
) -> None:
    """An operator rewrites an old entry with the signing key and re-hashes everything
    after it: the chain and the tree agree with themselves, but not with the checkpoint
    the auditor kept."""
    ledger, kept, old = grown_ledger(db_url, tmp_path)
    level, index = subtrees(0, old)[0]  # the largest subtree the checkpoint's root holds
    tamper(
        ledger,
        f"UPDATE tree_node SET hash = :h WHERE level = {level} AND idx = {index}",
        h=bytes(32),
    )
    status, said = verify_from(db_url, kept)
    assert status == 1 and "its history was rewritten" in said


def test_the_last_entry_the_checkpoint_covers_edited_is_found(db_url: str, tmp_path: Path) -> None:
    ledger, kept, old = grown_ledger(db_url, tmp_path)
    tamper(ledger, f"UPDATE ledger_entry SET recipient = 'dfe' WHERE seq = {old}")
    status, said = verify_from(db_url, kept)
    assert status == 1, said
    assert f"at seq {old}" in said or "its history was rewritten" in said


def test_entries_removed_below_the_checkpoint_s_size_are_a_rolled_back_log(
    db_url: str, tmp_path: Path
) -> None:
    ledger = ledger_with(db_url, events(40))
    kept = kept_checkpoint(db_url, tmp_path)
    old = count(ledger)
    tamper(
        ledger,
        f"DELETE FROM ledger_entry WHERE seq > {old - 3}",
        f"UPDATE chain_head SET seq = {old - 3}",
    )
    status, said = verify_from(db_url, kept)
    assert status == 1 and "the log rolled back" in said


def test_a_checkpoint_not_signed_by_the_log_s_key_is_refused(db_url: str, tmp_path: Path) -> None:
    ledger_with(db_url, events(20))
    kept = kept_checkpoint(db_url, tmp_path)
    status, said = verify_from(db_url, kept, {**ENV, "SHARING_AUDIT_LOG_KEY": "66" * 32})
    assert status != 0 and "Traceback" not in said
    assert LOG_KEY not in said


def test_both_checks_read_sqlite_through_a_small_page_cache_and_hand_back_the_writers(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check reads each page once: the writer's large page cache would only be memory,
    on a ledger of millions of entries most of verify's. The whole check and the check
    --from both read with a small one, and the pooled connection is handed back with the
    cache it had."""
    from pipeline.ledger.integrity import verification
    from pipeline.ledger.storage.dialects import VERIFY_CACHE_KIB
    from pipeline.transparency.note import Checkpoint, Note

    ledger, kept, _ = grown_ledger(sqlite_url, tmp_path)
    seen: list[int] = []
    for name in ("_verified", "_verified_from"):
        checking = getattr(verification, name)

        def noting(connection: Any, *rest: Any, _checking: Any = checking) -> Any:
            seen.append(int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one()))
            return _checking(connection, *rest)

        monkeypatch.setattr(verification, name, noting)
    checkpoint = Checkpoint.from_body(Note.parse(kept.read_bytes()).text)
    with ledger.engine.connect() as connection:
        before = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
        assert verification.verify(connection).ok
        assert verification.verify_from(connection, checkpoint, str(kept)).ok
        after = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
    small = -VERIFY_CACHE_KIB
    assert seen == [small, small] and before == after != small
