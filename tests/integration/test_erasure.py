"""Erasing a pupil's identifiers: their identity row goes, the erasure is an entry in the
chain, and no earlier leaf changes, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.ledger.erasure import ERASURE, ErasureRefused, erase
from pipeline.ledger.queries import Filters, entries
from pipeline.ledger.store import IDENTITY, Ledger
from pipeline.ledger.tree import root_at
from pipeline.ledger.verification import verify
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from tests.factory import upn
from tests.integration.breaches import BORN, KEY, ledger_with_breaches

pytestmark = pytest.mark.integration
PSEUDONYMS = pseudonymiser(KEY)


def _erase_pupil_one(ledger: Ledger) -> int:
    return erase(
        ledger, PSEUDONYMS(upn(1)), by="dpo", reason="the parent asked", rule="request"
    ).seq


def _identity_keys(ledger: Ledger) -> set[str]:
    with ledger.engine.connect() as connection:
        return set(connection.execute(select(IDENTITY.c.pupil_key)).scalars())


def test_erasing_a_pupil_deletes_their_identity_row_alone(db_url: str) -> None:
    ledger = ledger_with_breaches(db_url, load_pack())
    _erase_pupil_one(ledger)
    assert _identity_keys(ledger) == {PSEUDONYMS(upn(2)), PSEUDONYMS(upn(3))}


def test_the_erasure_is_an_entry_naming_the_pupil_by_pseudonym_alone(db_url: str) -> None:
    ledger = ledger_with_breaches(db_url, load_pack())
    seq = _erase_pupil_one(ledger)
    with ledger.engine.connect() as connection:
        found = list(entries(connection, Filters(pupil_key=PSEUDONYMS(upn(1)))))
    erasure = found[-1]
    assert (erasure.seq, erasure.kind, erasure.pupil_keys) == (seq, ERASURE, (PSEUDONYMS(upn(1)),))
    assert erasure.details == {
        "by": "dpo",
        "reason": "the parent asked",
        "rule": "request",
        "entries": len(found) - 1,
    }
    stored = repr(erasure)
    assert upn(1) not in stored and BORN[1] not in stored


def test_no_earlier_leaf_changes_and_the_ledger_still_verifies(db_url: str) -> None:
    ledger = ledger_with_breaches(db_url, load_pack())
    with ledger.engine.connect() as connection:
        size = Ledger.head(connection)[0]
        root = root_at(connection, size)
        assert verify(connection, PSEUDONYMS).ok
    _erase_pupil_one(ledger)
    with ledger.engine.connect() as connection:
        assert Ledger.head(connection)[0] == size + 1
        assert root_at(connection, size) == root
        checked = verify(connection, PSEUDONYMS)
    assert checked.ok, checked.fault


def test_a_pupil_erased_already_is_refused_naming_the_erasure(db_url: str) -> None:
    ledger = ledger_with_breaches(db_url, load_pack())
    seq = _erase_pupil_one(ledger)
    with pytest.raises(ErasureRefused, match=f"erased already, by entry {seq}"):
        _erase_pupil_one(ledger)


def test_a_pupil_no_entry_names_is_refused_and_nothing_is_appended(sqlite_url: str) -> None:
    ledger = ledger_with_breaches(sqlite_url, load_pack())
    with ledger.engine.connect() as connection:
        size = Ledger.head(connection)[0]
    with pytest.raises(ErasureRefused, match="no entry names this pupil"):
        erase(ledger, PSEUDONYMS(upn(40)), by="dpo", reason="asked", rule="request")
    with ledger.engine.connect() as connection:
        assert Ledger.head(connection)[0] == size


def test_a_reason_naming_the_upn_is_refused_before_anything_is_erased(sqlite_url: str) -> None:
    ledger = ledger_with_breaches(sqlite_url, load_pack())
    with pytest.raises(ErasureRefused, match="shaped like a UPN"):
        erase(ledger, PSEUDONYMS(upn(1)), by="dpo", reason=f"{upn(1)} asked", rule="request")
    assert PSEUDONYMS(upn(1)) in _identity_keys(ledger)


def test_after_erasure_no_file_of_a_sqlite_ledger_holds_the_upn_or_date_of_birth(
    tmp_path: Path,
) -> None:
    database = tmp_path / "ledger.db"
    ledger = ledger_with_breaches(f"sqlite:///{database}", load_pack())
    erased = erase(ledger, PSEUDONYMS(upn(1)), by="dpo", reason="asked", rule="request")
    assert erased.scrubbed == "zeroed"
    stored = b"".join(
        path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("ledger.db")
    )
    assert upn(1).encode() not in stored and BORN[1].encode() not in stored
    assert upn(2).encode() in stored  # the others are there to be found


def test_on_postgresql_the_identity_table_is_rewritten(pg_url: str) -> None:
    ledger = ledger_with_breaches(pg_url, load_pack())
    with ledger.engine.connect() as connection:
        before = connection.exec_driver_sql(
            "SELECT pg_relation_filenode('pupil_identity')"
        ).scalar()
    erased = erase(ledger, PSEUDONYMS(upn(1)), by="dpo", reason="asked", rule="request")
    with ledger.engine.connect() as connection:
        after = connection.exec_driver_sql("SELECT pg_relation_filenode('pupil_identity')").scalar()
    assert erased.scrubbed == "rewritten" and after != before
