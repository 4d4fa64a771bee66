"""An entry's pupils and details, kept on PostgreSQL with their quoted digests as bytes
(migration 0020): every search inside them finds what it found in the text, and a byte
changed behind the writer's back is named by ``ledger verify``."""

from __future__ import annotations

import importlib

import orjson
import pytest
from sqlalchemy import inspect, select

from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.reading.queries import Filters, entries, entries_at
from pipeline.ledger.reading.reads import Requester, search
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.errors import LedgerRefused
from pipeline.ledger.storage.models import holds, packed_json
from pipeline.ledger.storage.store import ENTRY, Ledger, binary_results
from pipeline.policy.pack import Policy
from tests.integration.test_ledger_contract import drop_triggers
from tests.integration.year import write_year

pytestmark = pytest.mark.integration

_DIGEST = "0123456789abcdef" * 4
_MIGRATION = importlib.import_module(
    "pipeline.ledger.storage.migrations.versions.0020_digests_in_json"
)


def _year_in(url: str, policy: Policy, pupils: int) -> Ledger:
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    write_year(ledger, policy, pupils=pupils, seed=7)
    return ledger


@pytest.fixture
def year(db_url: str, policy: Policy) -> Ledger:
    return _year_in(db_url, policy, 40)


@pytest.fixture
def pg_year(pg_url: str, policy: Policy) -> Ledger:
    return _year_in(pg_url, policy, 10)


def test_a_pupils_entries_are_those_naming_them_census_returns_included(year: Ledger) -> None:
    with year.engine.connect() as connection:
        every = list(entries(connection, Filters()))
        census = [e for e in every if len(e.pupil_keys) > 1]
        assert census, "the year holds no entry naming several pupils"
        for key in {census[0].pupil_keys[0], census[0].pupil_keys[-1], every[0].pupil_keys[0]}:
            found = [e.seq for e in entries(connection, Filters(pupil_key=key))]
            assert found == [e.seq for e in every if key in e.pupil_keys]


def test_entries_read_in_the_databases_binary_form_are_those_read_as_text(year: Ledger) -> None:
    """A pupil's page, an export and a report read their entries in PostgreSQL's binary
    form (a census return's pupils come as bytes, not as hex twice their size): every
    field of every kind of entry reads as it does through a plain read."""
    with year.engine.connect() as connection:
        pupil = next(e for e in entries(connection, Filters()) if e.pupil_keys).pupil_keys[0]
    search(year, Requester("an auditor", "auditor", "api"), Filters(pupil_key=pupil), 10)
    with year.engine.connect() as connection:
        seqs = [int(s) for (s,) in connection.execute(select(ENTRY.c.seq))]
        as_text = entries_at(connection, seqs)
        as_read = list(entries(connection, Filters()))
        with binary_results(connection):
            as_binary = entries_at(connection, seqs)
        # Once the block ends the connection answers as before: SQLAlchemy's reflection,
        # which reads a type psycopg has no binary reader for, fails in binary form.
        indexes = {index["name"] for index in inspect(connection).get_indexes("ledger_entry")}
    assert {e.kind for e in as_text} >= {"decision", "read"}
    assert any(len(e.pupil_keys) > 1 for e in as_text) and any(e.details for e in as_text)
    assert as_read == as_text and as_binary == as_text
    assert "ix_entry_recipient" in indexes


def test_a_fragment_is_searched_for_as_written_not_as_a_pattern(year: Ledger) -> None:
    with year.engine.connect() as connection:
        every = connection.execute(select(ENTRY.c.seq, ENTRY.c.details)).all()
        # As patterns, the second and third would match what the first does.
        for fragment in ('"sides"', '%"sides"%', '"s_des"', '"SIDES"', f'"{_DIGEST}"'):
            found = connection.execute(
                select(ENTRY.c.seq).where(holds(ENTRY.c.details, fragment))
            ).scalars()
            assert sorted(found) == sorted(s for s, d in every if d and fragment in d), fragment


@pytest.mark.parametrize(
    "written",
    [
        "",
        "[]",
        f'["{_DIGEST}"]',
        f'["{_DIGEST}","{_DIGEST}"]',
        f'"{_DIGEST}{_DIGEST}"',
        f'""{_DIGEST}"',
        f'"{_DIGEST}"{_DIGEST}"',
        f'"{_DIGEST[:-1]}"',
        f'"{_DIGEST}0"',
        f'"{_DIGEST.upper()}"',
        '{"sides":{"payload":"' + _DIGEST + '"},"note":"é \\" \\\\ %_"}',
    ],
)
def test_the_upgrades_sql_packs_json_as_the_writer_does(pg_url: str, written: str) -> None:
    """Rows written before 0020 are packed by SQL, rows after by Python: the same bytes."""
    engine = Ledger.open(pg_url).engine
    with engine.connect() as connection:  # rolled back: the function is the upgrade's
        connection.exec_driver_sql(_MIGRATION.PACKED_JSON)
        packed = connection.exec_driver_sql(
            "SELECT sharing_audit_packed_json(%s::text)", (written,)
        ).scalar_one()
    engine.dispose()
    assert bytes(packed) == packed_json(written)


@pytest.mark.parametrize("column", ["pupil_keys", "details"])
@pytest.mark.parametrize("text", [f'["{_DIGEST}"]', "[]", '{"recipient":"Smith\\\\Jones"}'])
def test_json_text_is_refused_as_an_earlier_versions_write(
    pg_year: Ledger, column: str, text: str
) -> None:
    """A process of a version before 0020, still running after the upgrade, would write
    the text (bytea's input taking a backslash as an escape): the ledger refuses it, so
    it records nothing rather than what no search finds or verify calls tampered."""
    with pg_year.engine.connect() as connection:
        drop_triggers(connection, pg_year.dialect)  # the append-only ones, not the checks
        with pytest.raises(LedgerRefused, match=f"ck_entry_{column}_packed"):
            connection.exec_driver_sql(
                f"UPDATE ledger_entry SET {column} = %s WHERE seq = 1", (text,)
            )


def test_a_single_pupil_is_kept_in_36_bytes_and_read_as_written(pg_year: Ledger) -> None:
    with pg_year.engine.connect() as connection:
        decided = select(ENTRY.c.seq, ENTRY.c.pupil_keys).where(ENTRY.c.kind == "decision")
        seq, read = next(
            row
            for row in connection.execute(decided.order_by(ENTRY.c.seq))
            if len(orjson.loads(row[1])) == 1
        )
        size, stored = connection.exec_driver_sql(
            f"SELECT octet_length(pupil_keys), pupil_keys FROM ledger_entry WHERE seq = {seq}"
        ).one()
    assert size == 36 and bytes(stored) == packed_json(read)


@pytest.mark.parametrize(
    "edit",
    [
        # A byte of the pupil's pseudonym, as kept.
        "pupil_keys = set_byte(pupil_keys, 5, get_byte(pupil_keys, 5) # 1)",
        # The mark before it, so the pseudonym's bytes would read as text.
        "pupil_keys = overlay(pupil_keys placing '\\x20'::bytea from 3 for 1)",
        # Cut short, mid-pseudonym.
        "details = substring(details from 1 for octet_length(details) - 10)",
        # Bytes that are not UTF-8 where text was.
        "details = '\\xc3'::bytea || details",
        # The same text, stored as the writer never stores it: the pseudonym as text,
        # which a pupil's search would not find (its check set aside, as an owner can).
        "pupil_keys = convert_to(concat('[\"', encode(substring(pupil_keys from 4 for 32), "
        "'hex'), '\"]'), 'UTF8')",
        # ... or the digest its details vouch with.
        "details = overlay(details placing convert_to(concat('\"', encode(substring(details "
        "from position('\\xff'::bytea IN details) + 1 for 32), 'hex'), '\"'), 'UTF8') "
        "from position('\\xff'::bytea IN details) for 33)",
    ],
)
def test_a_packed_byte_changed_behind_the_writer_is_found_at_its_seq(
    pg_year: Ledger, edit: str
) -> None:
    with pg_year.engine.begin() as connection:
        seq = connection.exec_driver_sql(
            "SELECT min(seq) FROM ledger_entry WHERE kind = 'decision' "
            "AND octet_length(pupil_keys) = 36 AND position('\\xff'::bytea IN details) > 0"
        ).scalar_one()
        drop_triggers(connection, pg_year.dialect)
        for column in _MIGRATION.PACKED:
            connection.exec_driver_sql(
                f"ALTER TABLE ledger_entry DROP CONSTRAINT ck_entry_{column}_packed"
            )
        connection.exec_driver_sql(f"UPDATE ledger_entry SET {edit} WHERE seq = {seq}")
    with pg_year.engine.connect() as connection:
        result = verify(connection)
    assert result.fault_seq == seq, result
