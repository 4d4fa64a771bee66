"""A row deleted from a SQLite ledger leaves none of its bytes in the files: an erased
pupil's UPN and date of birth are not left behind in a freed cell, a freed page or the WAL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, insert

from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import IDENTITY, Ledger

pytestmark = pytest.mark.integration

ERASED_UPN = "A123456789012"
ERASED_DOB = "2011-02-28"


def _identities(count: int) -> list[dict[str, str]]:
    """Distinct identity rows, the first of them the pupil to erase."""
    rows = [{"pupil_key": "e" * 64, "upn": ERASED_UPN, "dob": ERASED_DOB}]
    rows += [
        {"pupil_key": f"{n:064x}", "upn": f"K{n:012d}", "dob": "2012-09-01"}
        for n in range(1, count)
    ]
    return rows


def _files_bytes(database: Path) -> bytes:
    """Every byte SQLite keeps for the ledger: the database, its WAL and shared memory."""
    found = [database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))]
    return b"".join(path.read_bytes() for path in found if path.exists())


def _checkpointed(ledger: Ledger) -> None:
    with ledger.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _ledger_holding(tmp_path: Path, count: int) -> tuple[Ledger, Path]:
    database = tmp_path / "ledger.db"
    ledger = Ledger.open(f"sqlite:///{database}")
    schema.prepare(ledger.engine)
    with ledger.engine.begin() as connection:
        connection.execute(insert(IDENTITY), _identities(count))
    _checkpointed(ledger)
    assert ERASED_UPN.encode() in database.read_bytes()  # the test can see a UPN
    return ledger, database


def test_a_deleted_identity_row_leaves_no_upn_or_date_of_birth_in_its_page(
    tmp_path: Path,
) -> None:
    """The row's page stays in use by other pupils: its cell is zeroed, not just freed."""
    ledger, database = _ledger_holding(tmp_path, 20)
    with ledger.engine.begin() as connection:
        connection.execute(delete(IDENTITY).where(IDENTITY.c.upn == ERASED_UPN))
    _checkpointed(ledger)
    stored = _files_bytes(database)
    assert ERASED_UPN.encode() not in stored
    assert ERASED_DOB.encode() not in stored
    assert b"K000000000019" in stored  # the other pupils are still there


def test_pages_freed_by_deleting_identity_rows_keep_none_of_their_bytes(
    tmp_path: Path,
) -> None:
    """Deleting thousands of rows frees whole pages: they are zeroed on the freelist."""
    ledger, database = _ledger_holding(tmp_path, 5_000)
    with ledger.engine.begin() as connection:
        connection.execute(delete(IDENTITY))
    _checkpointed(ledger)
    stored = _files_bytes(database)
    assert ERASED_UPN.encode() not in stored
    assert b"K000000002500" not in stored
