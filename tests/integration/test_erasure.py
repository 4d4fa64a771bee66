"""Erasing a pupil's identifiers: their identity row goes, the erasure is an entry in the
chain, no earlier leaf changes, and neither the UPN nor any key the deployment holds leads
to the pupil's entries afterwards, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.engine import Position
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.privacy.erasure import ErasureRefused, erase, erase_many
from pipeline.ledger.reading.queries import Filters, entries
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.store import IDENTITY, PUPIL, Ledger
from pipeline.ledger.storage.tree import root_at
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.pupils import NOBODY, finder
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from tests.factory import line, referral, upn
from tests.integration.breaches import BORN, KEY, ledger_with_breaches

pytestmark = pytest.mark.integration
PSEUDONYMS = pseudonymiser(KEY)  # the key the ledger's identity rows are sealed with


def _erase(ledger: Ledger, pupil: str, reason: str = "the parent asked") -> int:
    return erase(ledger, pupil, by="dpo", reason=reason, rule="request").seq


def _identity_keys(ledger: Ledger) -> set[str]:
    with ledger.engine.connect() as connection:
        return set(connection.execute(select(IDENTITY.c.pupil_key)).scalars())


def _pseudonyms_in_entries(ledger: Ledger) -> set[str]:
    with ledger.engine.connect() as connection:
        return set(connection.execute(select(PUPIL.c.pupil_key)).scalars())


def test_erasing_a_pupil_deletes_their_identity_row_alone(db_url: str) -> None:
    ledger = ledger_with_breaches(db_url, load_pack())
    find = finder(ledger)
    _erase(ledger, find(upn(1)))
    assert _identity_keys(ledger) == {find(upn(2)), find(upn(3))}


def test_the_erasure_is_an_entry_naming_the_pupil_by_pseudonym_alone(db_url: str) -> None:
    ledger = ledger_with_breaches(db_url, load_pack())
    pupil = finder(ledger)(upn(1))
    seq = _erase(ledger, pupil)
    with ledger.engine.connect() as connection:
        found = list(entries(connection, Filters(pupil_key=pupil)))
    erasure = found[-1]
    assert (erasure.seq, erasure.kind, erasure.pupil_keys) == (seq, EntryKind.ERASURE, (pupil,))
    assert erasure.details == {
        "by": "dpo",
        "reason": "the parent asked",
        "rule": "request",
        "entries": len(found) - 1,
    }
    assert upn(1) not in repr(erasure) and BORN[1] not in repr(erasure)


def test_after_erasure_neither_the_upn_nor_the_key_leads_to_the_pupils_entries(
    db_url: str,
) -> None:
    """Holding every key the deployment keeps and the UPN: the search finds nobody, and
    the pseudonym the key makes of the UPN is in no entry."""
    ledger = ledger_with_breaches(db_url, load_pack())
    _erase(ledger, finder(ledger)(upn(1)))
    assert finder(ledger)(upn(1)) == NOBODY
    assert PSEUDONYMS(upn(1)) not in _pseudonyms_in_entries(ledger)


def test_a_pupil_met_again_after_erasure_gets_a_new_pseudonym(db_url: str) -> None:
    ledger = ledger_with_breaches(db_url, load_pack())
    erased = finder(ledger)(upn(1))
    _erase(ledger, erased)
    writer = LedgerWriter(ledger, load_pack(), PSEUDONYMS)
    writer.write([(line(referral(pupils=[{"upn": upn(1)}])), Position.line("g", 1))])
    again = finder(ledger)(upn(1))
    assert again not in (erased, NOBODY)
    with ledger.engine.connect() as connection:
        assert not [
            e for e in entries(connection, Filters(pupil_key=again)) if e.kind == EntryKind.ERASURE
        ]


def test_no_earlier_leaf_changes_and_the_ledger_still_verifies(db_url: str) -> None:
    ledger = ledger_with_breaches(db_url, load_pack())
    with ledger.engine.connect() as connection:
        size = Ledger.head(connection)[0]
        root = root_at(connection, size)
        assert verify(connection, PSEUDONYMS).ok
    _erase(ledger, finder(ledger)(upn(1)))
    with ledger.engine.connect() as connection:
        assert Ledger.head(connection)[0] == size + 1
        assert root_at(connection, size) == root
        checked = verify(connection, PSEUDONYMS)
    assert checked.ok, checked.fault


def test_an_identity_row_restored_after_erasure_is_a_fault_at_the_erasure(db_url: str) -> None:
    """A backup restored over the ledger brings the erased UPN back: verify names it."""
    ledger = ledger_with_breaches(db_url, load_pack())
    pupil = finder(ledger)(upn(1))
    with ledger.engine.connect() as connection:
        (row,) = connection.execute(select(IDENTITY).where(IDENTITY.c.pupil_key == pupil)).all()
    seq = _erase(ledger, pupil)
    with ledger.engine.begin() as connection:
        connection.execute(IDENTITY.insert().values(row._mapping))
    with ledger.engine.connect() as connection:
        checked = verify(connection)
    assert checked.fault_seq == seq and "names the pupil this entry erased" in str(checked.fault)


def test_a_pupil_erased_already_is_refused_naming_the_erasure(db_url: str) -> None:
    ledger = ledger_with_breaches(db_url, load_pack())
    pupil = finder(ledger)(upn(1))
    seq = _erase(ledger, pupil)
    with pytest.raises(ErasureRefused, match=f"erased already, by entry {seq}"):
        _erase(ledger, pupil)


def test_a_pupil_no_entry_names_is_refused_and_nothing_is_appended(sqlite_url: str) -> None:
    ledger = ledger_with_breaches(sqlite_url, load_pack())
    with ledger.engine.connect() as connection:
        size = Ledger.head(connection)[0]
    with pytest.raises(ErasureRefused, match="no entry names this pupil"):
        _erase(ledger, NOBODY)
    with ledger.engine.connect() as connection:
        assert Ledger.head(connection)[0] == size


def test_a_reason_naming_the_upn_is_refused_before_anything_is_erased(sqlite_url: str) -> None:
    ledger = ledger_with_breaches(sqlite_url, load_pack())
    pupil = finder(ledger)(upn(1))
    with pytest.raises(ErasureRefused, match="shaped like a UPN"):
        _erase(ledger, pupil, reason=f"{upn(1)} asked")
    assert pupil in _identity_keys(ledger)


def test_after_erasure_no_file_of_a_sqlite_ledger_holds_the_upn_or_date_of_birth(
    tmp_path: Path,
) -> None:
    database = tmp_path / "ledger.db"
    ledger = ledger_with_breaches(f"sqlite:///{database}", load_pack())
    erased = erase(ledger, finder(ledger)(upn(1)), by="dpo", reason="asked", rule="request")
    assert erased.scrubbed == "zeroed"
    stored = b"".join(
        path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("ledger.db")
    )
    assert upn(1).encode() not in stored and BORN[1].encode() not in stored
    assert upn(2).encode() in stored  # the others are there to be found


def test_on_postgresql_the_identity_table_is_rewritten(pg_url: str) -> None:
    ledger = ledger_with_breaches(pg_url, load_pack())
    node = "SELECT pg_relation_filenode('pupil_identity')"
    with ledger.engine.connect() as connection:
        before = connection.exec_driver_sql(node).scalar()
    erased = erase(ledger, finder(ledger)(upn(1)), by="dpo", reason="asked", rule="request")
    with ledger.engine.connect() as connection:
        after = connection.exec_driver_sql(node).scalar()
    assert erased.scrubbed == "rewritten" and after != before


def test_erasing_many_makes_an_entry_each_in_one_transaction(db_url: str) -> None:
    ledger = ledger_with_breaches(db_url, load_pack())
    find = finder(ledger)
    pupils = [find(upn(1)), find(upn(3))]
    with ledger.engine.connect() as connection:
        size = Ledger.head(connection)[0]
    erased = erase_many(ledger, pupils, by="dpo", reason="asked", rule="request")
    assert list(erased) == pupils
    assert [one.seq for one in erased.values()] == [size + 1, size + 2]
    assert _identity_keys(ledger) == {find(upn(2))}
    with ledger.engine.connect() as connection:
        made = [e for e in entries(connection, Filters(kind=EntryKind.ERASURE))]
        assert verify(connection, PSEUDONYMS).ok
    assert [(e.pupil_keys, (e.details or {})["entries"]) for e in made] == [
        ((pupils[0],), erased[pupils[0]].entries),
        ((pupils[1],), erased[pupils[1]].entries),
    ]


def test_erasing_many_with_one_erased_already_erases_none(db_url: str) -> None:
    ledger = ledger_with_breaches(db_url, load_pack())
    first, second = finder(ledger)(upn(1)), finder(ledger)(upn(2))
    seq = _erase(ledger, first)
    with pytest.raises(ErasureRefused, match=f"erased already, by entry {seq}"):
        erase_many(ledger, [second, first], by="dpo", reason="asked", rule="request")
    assert second in _identity_keys(ledger)


def test_erasing_many_passes_over_those_erased_meanwhile_when_asked_to(db_url: str) -> None:
    """Two workers applying the ledger's retention at once erase each pupil once."""
    ledger = ledger_with_breaches(db_url, load_pack())
    first, second = finder(ledger)(upn(1)), finder(ledger)(upn(2))
    _erase(ledger, first)
    erased = erase_many(
        ledger, [first, second], by="dpo", reason="asked", rule="retention", skip_erased=True
    )
    assert list(erased) == [second]
    with ledger.engine.connect() as connection:
        assert len(list(entries(connection, Filters(kind=EntryKind.ERASURE)))) == 2
