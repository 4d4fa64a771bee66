"""The ledger's contract, run against every database it supports.

``LedgerContract`` states the behaviour; each ``Test...Ledger`` subclass only says how to
get a database (the eventsourcing library's pattern).
"""

from __future__ import annotations

import json
import multiprocessing
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, LargeBinary, func, select, text, type_coerce, update
from sqlmodel import SQLModel

from pipeline.engine import Engine, Position
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.log.checkpoints import record_cosignature, sign_if_grown
from pipeline.ledger.reading.queries import Filters, entries
from pipeline.ledger.records.chain import ENTRY_FIELDS
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.dialects import SQLITE, Dialect
from pipeline.ledger.storage.errors import LedgerRefused
from pipeline.ledger.storage.models import APPEND_ONLY_TABLES
from pipeline.ledger.storage.store import ENTRY, PAYLOAD, PUPIL, Ledger, NewEntry
from pipeline.ledger.writing.ingest import LedgerWriter, Record
from pipeline.ledger.writing.pupils import finder
from pipeline.packs import load_pack
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.simulate import simulate
from pipeline.transparency.note import Signer
from tests.two_schools import CASES, verdict

# The SQLite half runs in `make test-fast` (every change that touches the ledger meets its
# contract there); the PostgreSQL half, which needs the server, in `make test`.
pytestmark = [pytest.mark.integration]

KEY = bytes(range(32))


def year(pupils: int = 120, rate: float = 0.2, seed: int = 3) -> list[Record]:
    lines = simulate(pupils, rate, seed)
    return [
        (orjson.dumps(ln.event), Position.line("year.jsonl", i)) for i, ln in enumerate(lines, 1)
    ]


def write_all(writer: LedgerWriter, records: list[Record], batch: int = 50) -> list[Any]:
    outcomes = []
    for start in range(0, len(records), batch):
        outcomes += writer.write(records[start : start + batch])
    return outcomes


def numbered(events: list[dict[str, Any]], first: int = 0) -> list[Record]:
    """Events as records, at lines ``first`` on of a file."""
    return [(orjson.dumps(e), Position.line("f", n)) for n, e in enumerate(events, first)]


def drop_triggers(connection: Connection, dialect: Dialect) -> None:
    """What someone bypassing the database's protection would do first."""
    for table in APPEND_ONLY_TABLES:
        if dialect is SQLITE:
            for verb in ("update", "delete"):
                connection.execute(text(f"DROP TRIGGER {table}_no_{verb}"))
        else:
            for name in ("no_change", "no_truncate"):
                connection.execute(text(f"DROP TRIGGER {table}_{name} ON {table}"))


def _append_in_process(url: str, records: list[tuple[bytes, str, int]]) -> None:
    ledger = Ledger.open(url)
    writer = LedgerWriter(ledger, load_pack(), pseudonymiser(KEY))
    batch: list[Record] = []
    for raw, topic, offset in records:
        batch.append((raw, Position(topic, 0, offset)))
        if len(batch) == 10:
            writer.write(batch)
            batch = []
    if batch:
        writer.write(batch)


class LedgerContract:
    """What every ledger database must do. Subclasses provide the ``url`` fixture."""

    @pytest.fixture
    def ledger(self, url: str) -> Ledger:
        ledger = Ledger.open(url)
        schema.upgrade(ledger.engine)
        return ledger

    @pytest.fixture
    def policy(self) -> Policy:
        return load_pack()

    @pytest.fixture
    def writer(self, ledger: Ledger, policy: Policy) -> LedgerWriter:
        return LedgerWriter(ledger, policy, pseudonymiser(KEY))

    @pytest.fixture
    def filled(self, writer: LedgerWriter, ledger: Ledger) -> Ledger:
        """A year of events, a checkpoint signed of them, and a witness's answer to it."""
        write_all(writer, year(60, 0.2, 5))
        signed = sign_if_grown(ledger, Signer("test.example/log", bytes(32)))
        assert signed is not None
        record_cosignature(ledger, signed.checkpoint.size, "witness.example/w", None, "a test")
        return ledger

    def all_entries(self, ledger: Ledger) -> list[Entry]:
        with ledger.engine.connect() as connection:
            return list(entries(connection))

    def verification(self, ledger: Ledger) -> Any:
        """One pass's check, which the check split over processes must match exactly."""
        with ledger.engine.connect() as connection:
            one_pass = verify(connection)
        with ledger.engine.connect() as connection:
            assert verify(connection, jobs=3, min_range=1) == one_pass
        return one_pass

    # -- the schema ------------------------------------------------------------------------

    def test_the_migrations_create_the_append_only_triggers(self, ledger: Ledger) -> None:
        triggers = schema.append_only_triggers(ledger.engine)
        expected = 2
        assert all(len(names) == expected for names in triggers.values()), triggers
        assert set(triggers) == set(APPEND_ONLY_TABLES)
        assert schema.is_current(ledger.engine)

    @pytest.mark.parametrize(
        "statement", ["UPDATE ledger_entry SET decision = 'allowed'", "DELETE FROM ledger_entry"]
    )
    def test_update_and_delete_of_an_entry_are_refused(
        self, filled: Ledger, statement: str
    ) -> None:
        with (
            pytest.raises(LedgerRefused, match="ledger_entry is append-only"),
            filled.engine.begin() as connection,
        ):
            connection.execute(text(statement + " WHERE seq = 3"))
        assert self.verification(filled).ok

    @pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
    def test_every_ledger_table_refuses_delete(self, filled: Ledger, table: str) -> None:
        with (
            pytest.raises(LedgerRefused, match=f"{table} is append-only"),
            filled.engine.begin() as connection,
        ):
            connection.execute(text(f"DELETE FROM {table}"))

    def test_the_identity_table_can_be_erased(self, filled: Ledger) -> None:
        with filled.engine.begin() as connection:
            connection.execute(text("DELETE FROM pupil_identity"))
        assert self.verification(filled).ok

    def test_a_pupils_identity_takes_the_latest_date_of_birth_an_event_brings(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        from tests.factory import census, line, upn

        def sent(dob: str | None) -> dict[str, Any]:
            pupil = {"upn": upn(1), **({"dob": dob} if dob else {})}
            return census(pupils=[pupil], categories=["personal"])

        def stored_dob() -> str | None:
            with ledger.engine.connect() as connection:
                dob: str | None = connection.execute(
                    text("SELECT dob FROM pupil_identity")
                ).scalar_one()
                return dob

        writer.write([(line(sent(None)), Position.line("f", 1))])
        assert stored_dob() is None
        writer.write([(line(sent("2014-05-02")), Position.line("f", 2))])
        assert stored_dob() == "2014-05-02"
        writer.write([(line(sent(None)), Position.line("f", 3))])
        assert stored_dob() == "2014-05-02"
        writer.write([(line(sent("2014-05-03")), Position.line("f", 4))])
        assert stored_dob() == "2014-05-03"
        # In one batch, the last date of birth brought wins, even the one the row holds.
        writer.write(
            [
                (line(sent("2014-05-04")), Position.line("f", 5)),
                (line(sent("2014-05-03")), Position.line("f", 6)),
            ]
        )
        assert stored_dob() == "2014-05-03"

    # -- appending -------------------------------------------------------------------------

    def test_decisions_match_the_in_memory_engine_across_batches(
        self, writer: LedgerWriter, policy: Policy
    ) -> None:
        records = year(150, 0.25, 9)
        engine = Engine(policy)
        expected: dict[Any, Any] = {}
        for raw, position in records:
            for outcome in engine.process(raw, position):
                expected[(outcome.position, outcome.kind == "reevaluation")] = outcome.decision
        got: dict[Any, Any] = {}
        for outcome in write_all(writer, records, batch=37):
            got[(outcome.position, outcome.kind == "reevaluation")] = outcome.decision
        assert got == expected

    def test_a_write_after_reading_entries_on_the_same_connection_goes_through(
        self, filled: Ledger
    ) -> None:
        """Reading streams its rows (a server-side cursor on PostgreSQL) for that read
        alone: the connection is left as it was for what follows in its transaction."""
        with filled.locked() as connection:
            seq = len(list(entries(connection))) + 1
            act = Entry.act(
                seq, EntryKind.READ, {"action": "test"}, recorded_at="2026-12-01T00:00:00Z"
            )
            filled.append(connection, [NewEntry(act)])
        assert self.verification(filled).count == seq

    def test_the_chain_is_gap_free_and_verifies(self, filled: Ledger) -> None:
        rows = self.all_entries(filled)
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
        result = self.verification(filled)
        assert result.ok and result.count == len(rows)

    def test_a_redelivered_batch_records_nothing_twice(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        records = year(40, 0.3, 2)
        write_all(writer, records)
        before = len(self.all_entries(ledger))
        again = write_all(writer, records, batch=23)
        assert {o.kind for o in again} == {"duplicate"}
        assert len(self.all_entries(ledger)) == before

    def test_a_batch_that_failed_midway_is_recorded_once_when_retried(
        self, writer: LedgerWriter, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        records = year(30, 0.3, 4)
        half = len(records) // 2
        write_all(writer, records[:half])
        original = Ledger.append

        def crash(self: Ledger, connection: Connection, new: Any, **options: Any) -> str:
            original(self, connection, new, **options)  # the rows are written ...
            raise RuntimeError("worker killed")  # ... but the transaction never commits

        monkeypatch.setattr(Ledger, "append", crash)
        with pytest.raises(RuntimeError):
            writer.write(records[half:])
        monkeypatch.setattr(Ledger, "append", original)
        write_all(writer, records[half - 5 :])  # the retry overlaps what was committed
        rows = self.all_entries(ledger)
        decisions = [
            r.event_id for r in rows if r.kind == "decision" and not r.refers_to and r.event_id
        ]
        assert len(decisions) == len(set(decisions))
        assert self.verification(ledger).ok

    def test_a_reused_id_is_recorded_once_referring_to_the_first(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        from tests.factory import census, line

        first = census()
        second = {**census(categories=["attendance"]), "id": first["id"]}
        records = [(line(first), Position.line("f", 1)), (line(second), Position.line("f", 2))]
        writer.write(records)
        writer.write(records)
        rows = self.all_entries(ledger)
        assert [(r.seq, r.refers_to, r.rules) for r in rows] == [
            (1, None, ()),
            (2, 1, ("event.id_reused",)),
        ]

    def test_an_unparseable_record_is_recorded_once_per_position(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        records = [(b"{not json", Position("sharing.census", 0, 7))]
        writer.write(records)
        writer.write(records)
        writer.write([(b"{not json", Position("sharing.census", 0, 8))])
        rows = self.all_entries(ledger)
        assert [(r.offset, r.event_id, r.rules) for r in rows] == [
            (7, None, ("event.invalid",)),
            (8, None, ("event.invalid",)),
        ]

    def test_a_late_fact_in_a_later_batch_appends_a_re_evaluation(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        from tests.factory import consent_given, consent_withdrawn, line, referral

        given = consent_given()
        event = referral(
            lawful_basis="consent",
            special_condition="9.2.a",
            consent_ref="C-1",
            categories=["personal", "medical"],
        )
        writer.write([(line(given), Position.line("f", 1)), (line(event), Position.line("f", 2))])
        late = consent_withdrawn(time="2026-07-20T09:00:00+01:00")
        outcomes = writer.write([(line(late), Position.line("f", 3))])
        assert [o.kind for o in outcomes] == ["decision", "reevaluation"]
        rows = self.all_entries(ledger)
        assert rows[-1].kind == "reevaluation"
        assert rows[-1].refers_to == 2
        assert rows[-1].rules == ("consent.withdrawn",)
        assert (rows[-1].details or {})["reevaluated_by"] == late["id"]

    def test_the_events_a_fact_may_re_decide_are_each_pupils_own_since_its_fact(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        from tests.factory import census, referral, upn
        from tests.two_schools import URN

        ann, ben = upn(11), upn(12)
        events = [
            referral(pupils=[{"upn": ann}], time="2026-03-02T10:00:00Z"),
            referral(pupils=[{"upn": ben}], time="2026-04-01T10:00:00Z"),
            referral(pupils=[{"upn": ben}], time="2026-06-01T10:00:00Z"),
            census(pupils=[{"upn": ann}, {"upn": ben}], time="2026-05-01T10:00:00Z"),
        ]
        writer.write(numbered(events))
        since = {
            (URN, finder(ledger)(ann)): "2026-02-01T00:00:00.000000Z",  # all of Ann's
            (URN, finder(ledger)(ben)): "2026-05-15T00:00:00.000000Z",  # Ben's of June only
        }
        with ledger.engine.connect() as connection:
            affected = Ledger.affected_by(connection, since)
        assert [entry.event_id for entry, _ in affected] == [
            events[0]["id"],
            events[2]["id"],
            events[3]["id"],
        ]
        assert all(orjson.loads(body)["id"] == entry.event_id for entry, body in affected)

    def test_the_events_a_fact_may_re_decide_are_its_own_schools_alone(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        from tests.factory import referral, upn
        from tests.two_schools import OTHER_SCHOOL, URN

        ann = upn(11)
        ours = referral(pupils=[{"upn": ann}], time="2026-03-02T10:00:00Z")
        theirs = referral(pupils=[{"upn": ann}], source=OTHER_SCHOOL, time="2026-03-02T10:00:00Z")
        writer.write(numbered([ours, theirs]))
        since = {(URN, finder(ledger)(ann)): "2026-02-01T00:00:00.000000Z"}
        with ledger.engine.connect() as connection:
            affected = Ledger.affected_by(connection, since)
        assert [entry.event_id for entry, _ in affected] == [ours["id"]]

    # -- facts belong to the school that recorded them (contract, 2026-12-06) --------------

    @pytest.mark.parametrize("kind", sorted(CASES))
    def test_another_schools_fact_in_an_earlier_batch_does_not_decide_an_event(
        self, writer: LedgerWriter, kind: str
    ) -> None:
        case = CASES[kind]()
        facts = [*case.own[:-1], case.others_fact]
        writer.write(numbered(facts))
        (outcome,) = writer.write(numbered([case.event], 9))
        assert verdict(outcome.decision) == case.alone
        assert not any(case.others_fact["id"] in r for r in outcome.decision.reasons)

    @pytest.mark.parametrize("kind", sorted(CASES))
    def test_another_schools_late_fact_appends_no_re_evaluation(
        self, writer: LedgerWriter, ledger: Ledger, kind: str
    ) -> None:
        case = CASES[kind]()
        writer.write(numbered(case.own))
        outcomes = writer.write(numbered([case.others_fact], 9))
        assert [o.kind for o in outcomes] == ["decision"]
        assert [r.kind for r in self.all_entries(ledger)].count("reevaluation") == 0
        with ledger.engine.connect() as connection:
            (current,) = Ledger.decisions_for(connection, [case.event["id"]])
        assert (current.decision, list(current.rules)) == case.alone

    @pytest.mark.parametrize("kind", sorted(CASES))
    def test_a_schools_own_late_fact_re_decides_its_event_from_the_ledger(
        self, writer: LedgerWriter, ledger: Ledger, kind: str
    ) -> None:
        """The control: the same fact, recorded by the school itself, does re-decide."""
        case = CASES[kind]()
        writer.write(numbered(case.own))
        own = case.as_own()
        outcomes = writer.write(numbered([own], 9))
        assert [(o.kind, o.event_id) for o in outcomes] == [
            ("decision", own["id"]),
            ("reevaluation", case.event["id"]),
        ]
        assert verdict(outcomes[1].decision) == case.decides

    def test_a_fact_from_another_partition_is_decided_before_later_events_of_its_batch(
        self, writer: LedgerWriter
    ) -> None:
        from tests.factory import consent_given, line, referral

        event = referral(
            lawful_basis="consent",
            special_condition="9.2.a",
            consent_ref="C-1",
            categories=["personal", "medical"],
        )
        given = consent_given()  # timed before the referral, arriving after it
        outcomes = writer.write(
            [
                (line(event), Position("sharing.referral", 0, 0)),
                (line(given), Position("pupil.lifecycle", 0, 0)),
            ]
        )
        assert [(o.event_id, o.kind) for o in outcomes] == [
            (given["id"], "decision"),
            (event["id"], "decision"),
        ]
        assert outcomes[1].decision.decision == "allowed"

    def test_a_fact_dated_months_ahead_holds_back_no_later_fact_of_its_partition(
        self, writer: LedgerWriter
    ) -> None:
        """A backlog drained in one group: the facts partition's first record is dated
        months ahead (an MIS clock wrong, a consent recorded ahead); the consent after it
        still decides the referral timed between the two."""
        from tests.factory import consent_given, line, referral, upn

        event = referral(
            lawful_basis="consent",
            special_condition="9.2.a",
            consent_ref="C-1",
            categories=["personal", "medical"],
            time="2026-07-05T09:00:00+01:00",
        )
        ahead = consent_given(pupil=upn(2), ref="C-2", time="2027-01-14T11:31:00Z")
        given = consent_given(time="2026-07-01T09:00:00+01:00")
        outcomes = writer.write(
            [
                (line(event), Position("sharing.referral", 0, 0)),
                (line(ahead), Position("pupil.lifecycle", 0, 0)),
                (line(given), Position("pupil.lifecycle", 0, 1)),
            ]
        )
        assert [(o.event_id, o.kind) for o in outcomes] == [
            (ahead["id"], "decision"),
            (given["id"], "decision"),
            (event["id"], "decision"),
        ]
        assert outcomes[-1].decision.decision == "allowed"

    def test_one_partition_is_decided_in_its_own_order_whatever_the_event_times(
        self, writer: LedgerWriter
    ) -> None:
        from tests.factory import consent_given, line, referral

        event = referral(
            lawful_basis="consent",
            special_condition="9.2.a",
            consent_ref="C-1",
            categories=["personal", "medical"],
        )
        given = consent_given()
        outcomes = writer.write(
            [
                (line(event), Position("pupil.mixed", 0, 0)),
                (line(given), Position("pupil.mixed", 0, 1)),
            ]
        )
        assert [(o.event_id, o.kind) for o in outcomes] == [
            (event["id"], "decision"),
            (given["id"], "decision"),
            (event["id"], "reevaluation"),
        ]
        assert outcomes[-1].decision.decision == "allowed"

    def test_two_processes_appending_at_once_make_one_chain(self, url: str, ledger: Ledger) -> None:
        records = year(80, 0.1, 8)
        halves = [
            [(raw, f"topic-{n}", pos.offset or 0) for raw, pos in records[n::2]] for n in (0, 1)
        ]
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=_append_in_process, args=(url, h)) for h in halves]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
            assert worker.exitcode == 0
        rows = self.all_entries(ledger)
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
        assert self.verification(ledger).ok
        ids = {json.loads(raw).get("id") for raw, _ in records if raw.startswith(b"{")}
        recorded = {r.event_id for r in rows if r.kind == "decision"}
        assert ids <= recorded

    # -- tampering, with the triggers dropped -----------------------------------------------

    @pytest.mark.parametrize(
        "field", [f for f in ENTRY_FIELDS if f not in ("seq",)] + ["prev_hash"]
    )
    def test_changing_any_field_of_an_entry_is_found_at_that_seq(
        self, filled: Ledger, field: str
    ) -> None:
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            # Through the columns' types: a digest reads and is written as its hex text,
            # whatever the database keeps (raw bytes on PostgreSQL).
            current = connection.execute(select(ENTRY.c[field]).where(ENTRY.c.seq == 5)).scalar()
            if isinstance(current, int):
                changed: Any = current + 1
            elif current is None or field in ("pupil_keys", "categories", "rules", "reasons"):
                changed = "1" if field in ("partition", "offset", "refers_to") else '["x"]'
            else:
                changed = str(current)[:-1] + ("0" if str(current)[-1:] != "0" else "1")
            connection.execute(update(ENTRY).where(ENTRY.c.seq == 5).values({field: changed}))
        result = self.verification(filled)
        assert result.fault_seq == 5, result

    def test_deleting_an_entry_is_found_at_its_seq(self, filled: Ledger) -> None:
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            connection.execute(text("DELETE FROM ledger_entry WHERE seq = 7"))
        result = self.verification(filled)
        assert result.fault_seq == 7 and "missing" in str(result.fault)

    def test_deleting_the_last_entry_is_found(self, filled: Ledger) -> None:
        last = len(self.all_entries(filled))
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            connection.execute(text(f"DELETE FROM ledger_entry WHERE seq = {last}"))
        assert self.verification(filled).fault_seq == last

    def test_swapping_two_entries_is_found_at_the_first(self, filled: Ledger) -> None:
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            connection.execute(text("UPDATE ledger_entry SET seq = -1 WHERE seq = 4"))
            connection.execute(text("UPDATE ledger_entry SET seq = 4 WHERE seq = 9"))
            connection.execute(text("UPDATE ledger_entry SET seq = 9 WHERE seq = -1"))
        assert self.verification(filled).fault_seq == 4

    def test_inserting_an_entry_is_found_at_its_seq(self, filled: Ledger) -> None:
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            last = connection.execute(text("SELECT max(seq) FROM ledger_entry")).scalar_one()
            for seq in range(last, 5, -1):  # make room at 6, from the end down
                connection.execute(
                    text(f"UPDATE ledger_entry SET seq = {seq + 1} WHERE seq = {seq}")
                )
            connection.execute(
                text(
                    "INSERT INTO ledger_entry (seq, kind, recorded_at, pupil_keys, categories, "
                    "rules, reasons, prev_hash, hash) SELECT 6, kind, recorded_at, pupil_keys, "
                    "categories, rules, reasons, hash, :h FROM ledger_entry WHERE seq = 5"
                ),
                {"h": "f" * 64},
            )
        assert self.verification(filled).fault_seq == 6

    # -- tampering where a split check joins its ranges --------------------------------------

    def _boundaries(self, ledger: Ledger) -> list[int]:
        """The first seq of each range after the first, when three processes verify."""
        top = len(self.all_entries(ledger))
        return [1 + top * i // 3 for i in (1, 2)]

    @pytest.mark.parametrize("near", [-1, 0, 1])
    @pytest.mark.parametrize(
        "tamper",
        [
            "UPDATE ledger_entry SET recorded_at = recorded_at || 'x' WHERE seq = {s}",
            "UPDATE ledger_entry SET prev_hash = hash WHERE seq = {s}",
            "DELETE FROM ledger_entry WHERE seq = {s}",
            "DELETE FROM ledger_entry WHERE seq >= {s} - 1 AND seq <= {s} + 1",
            "UPDATE ledger_entry SET seq = -seq WHERE seq IN ({s} - 1, {s})",
        ],
        ids=["changed", "relinked", "deleted", "run-deleted", "pair-moved-away"],
    )
    def test_a_split_check_finds_what_one_pass_finds_where_its_ranges_join(
        self, filled: Ledger, tamper: str, near: int
    ) -> None:
        """``verification`` asserts that three processes report exactly one pass's fault."""
        seqs = [b + near for b in self._boundaries(filled)]
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            for seq in seqs:
                connection.execute(text(tamper.format(s=seq)))
        result = self.verification(filled)
        assert not result.ok and result.fault_seq is not None
        assert result.fault_seq <= seqs[0] + 1, result

    def test_a_split_check_finds_a_whole_range_removed(self, filled: Ledger) -> None:
        first, second = self._boundaries(filled)
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            connection.execute(
                text(f"DELETE FROM ledger_entry WHERE seq >= {first} AND seq < {second}")
            )
        result = self.verification(filled)
        assert result.fault_seq == first and "missing" in str(result.fault)

    def test_a_split_check_finds_the_chains_end_removed(self, filled: Ledger) -> None:
        _, second = self._boundaries(filled)
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            connection.execute(text(f"DELETE FROM ledger_entry WHERE seq >= {second}"))
        result = self.verification(filled)
        assert result.fault_seq == second and "chain head" in str(result.fault)

    # -- tampering with the rows beside the chain ------------------------------------------

    def first_seq(self, ledger: Ledger, sql: str) -> int:
        with ledger.engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar_one())

    def insert_a_copied_fact(self, ledger: Ledger, seq: int) -> None:
        """A copy of a recorded fact claiming entry ``seq``: no trigger refuses an INSERT."""
        with ledger.engine.begin() as connection:
            fact = connection.execute(text("SELECT pupil_key, fact FROM register_fact")).first()
            assert fact is not None
            connection.execute(
                text("INSERT INTO register_fact (seq, pupil_key, fact) VALUES (:s, :k, :f)"),
                {"s": seq, "k": fact[0], "f": fact[1]},
            )

    def verified_with_key(self, ledger: Ledger) -> Any:
        with ledger.engine.connect() as connection:
            one_pass = verify(connection, pseudonymiser(KEY))
        with ledger.engine.connect() as connection:
            assert verify(connection, pseudonymiser(KEY), jobs=3, min_range=1) == one_pass
        return one_pass

    def test_a_changed_register_fact_is_found_at_its_entry(self, filled: Ledger) -> None:
        seq = self.first_seq(filled, "SELECT min(seq) FROM register_fact")
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            connection.execute(
                text(
                    'UPDATE register_fact SET fact = replace(fact, \'"at":"\', '
                    '\'"at":"1\') WHERE seq = :s'
                ),
                {"s": seq},
            )
        result = self.verification(filled)
        assert (result.fault_seq, result.fault) == (seq, "its register fact was changed")

    def test_an_inserted_register_fact_is_found_at_the_entry_it_claims(
        self, filled: Ledger
    ) -> None:
        """A fact slipped in beside a breach would turn it allowed on re-evaluation."""
        seq = self.first_seq(filled, "SELECT min(seq) FROM ledger_entry WHERE decision = 'breach'")
        self.insert_a_copied_fact(filled, seq)
        result = self.verification(filled)
        assert result.fault_seq == seq and "inserted" in str(result.fault)

    def test_a_fact_inserted_after_moving_the_side_rows_bound_is_still_found(
        self, filled: Ledger
    ) -> None:
        """``side_rows_bound_from`` is an unhashed row no trigger guards: moved past the
        chain's end it would switch every side-row check off for an INSERT to pass."""
        seq = self.first_seq(filled, "SELECT min(seq) FROM ledger_entry WHERE decision = 'breach'")
        with filled.engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE ledger_meta SET value = '1000000000' "
                    "WHERE name = 'side_rows_bound_from'"
                )
            )
        self.insert_a_copied_fact(filled, seq)
        result = self.verification(filled)
        assert not result.ok and result.fault_seq is not None and result.fault_seq <= seq

    def test_a_register_fact_claiming_an_entry_not_yet_written_is_found(
        self, filled: Ledger
    ) -> None:
        """Slipped in ahead of the chain, it would be read as a fact when that seq came."""
        seq = self.first_seq(filled, "SELECT max(seq) FROM ledger_entry") + 100_001
        self.insert_a_copied_fact(filled, seq)
        result = self.verification(filled)
        assert result.fault_seq == seq and "inserted" in str(result.fault)

    def test_a_removed_register_fact_is_found_at_its_entry(self, filled: Ledger) -> None:
        seq = self.first_seq(filled, "SELECT min(seq) FROM register_fact")
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            connection.execute(text("DELETE FROM register_fact WHERE seq = :s"), {"s": seq})
        result = self.verification(filled)
        assert (result.fault_seq, result.fault) == (seq, "its register fact was removed")

    def test_a_changed_event_payload_is_found_at_its_entry(self, filled: Ledger) -> None:
        seq = self.first_seq(filled, "SELECT max(seq) FROM event_payload")
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            # Through the column's type, which deflates the text as the writer does.
            body = connection.execute(
                select(PAYLOAD.c.body).where(PAYLOAD.c.seq == seq)
            ).scalar_one()
            changed = body.replace("legal_obligation", "public_task") + " "
            connection.execute(update(PAYLOAD).where(PAYLOAD.c.seq == seq).values(body=changed))
        result = self.verification(filled)
        assert (result.fault_seq, result.fault) == (seq, "its event payload was changed")

    def test_a_payload_whose_bytes_no_longer_inflate_is_found_at_its_entry(
        self, filled: Ledger
    ) -> None:
        seq = self.first_seq(filled, "SELECT max(seq) FROM event_payload")
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            garbled = update(PAYLOAD).where(PAYLOAD.c.seq == seq)
            connection.execute(garbled.values(body=type_coerce(b"\x01not deflate", LargeBinary)))
        result = self.verification(filled)
        assert (result.fault_seq, result.fault) == (seq, "its event payload was changed")

    def test_a_changed_copy_of_a_payloads_oldest_records_is_found_at_its_entry(
        self, filled: Ledger
    ) -> None:
        """The retention check reads the copy: one edited would hide a record from it."""
        seq = self.first_seq(filled, "SELECT max(seq) FROM event_payload")
        with filled.engine.begin() as connection:
            drop_triggers(connection, filled.dialect)
            later = update(PAYLOAD).where(PAYLOAD.c.seq == seq)
            connection.execute(later.values(oldest_record='{"attendance":"2099-09-01"}'))
        result = self.verification(filled)
        assert result.fault_seq == seq
        assert result.fault == "the copy of its payload's oldest records was changed"

    def test_an_identity_row_given_another_upn_is_found_at_the_pupils_first_entry(
        self, filled: Ledger
    ) -> None:
        """Else a subject-access report would show another pupil's UPN (one no other row
        holds: the unique index on the UPN refuses a second row for a pupil)."""
        from tests.factory import upn

        with filled.engine.begin() as connection:
            first = connection.execute(
                text("SELECT pupil_key, upn FROM pupil_identity ORDER BY pupil_key LIMIT 1")
            ).one()
            connection.execute(
                text("UPDATE pupil_identity SET upn = :u WHERE pupil_key = :k"),
                {"u": upn(999, la=851), "k": first[0]},
            )
            named = connection.execute(
                select(func.min(PUPIL.c.seq)).where(PUPIL.c.pupil_key == first[0])
            ).scalar_one()
        assert self.verification(filled).ok  # without the key, identities go unchecked
        result = self.verified_with_key(filled)
        assert result.fault_seq == named and "identity" in str(result.fault)

    def test_an_identity_row_given_another_date_of_birth_is_found(self, filled: Ledger) -> None:
        with filled.engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE pupil_identity SET dob = '2001-01-01' WHERE pupil_key = "
                    "(SELECT min(pupil_key) FROM pupil_identity)"
                )
            )
        assert not self.verified_with_key(filled).ok

    @pytest.mark.parametrize(
        ("statement", "fault"),
        [
            (
                "UPDATE alert_outbox SET status = 'superseded', relayed_at = '2026-01-01' "
                "WHERE seq = :s",
                "its alert was marked superseded, but nothing re-decided it",
            ),
            ("UPDATE alert_outbox SET body = body || ' ' WHERE seq = :s", "its alert was changed"),
            ("DELETE FROM alert_outbox WHERE seq = :s", "its alert was removed"),
        ],
    )
    def test_an_alert_hidden_from_the_desk_is_found_at_its_entry(
        self, filled: Ledger, statement: str, fault: str
    ) -> None:
        """Incidents are built from the outbox: an edited row once removed one unseen."""
        seq = self.first_seq(
            filled,
            "SELECT min(o.seq) FROM alert_outbox o JOIN ledger_entry e ON e.seq = o.seq "
            "WHERE e.kind = 'decision' AND NOT EXISTS (SELECT 1 FROM ledger_entry r "
            "WHERE r.kind = 'reevaluation' AND r.refers_to = o.seq)",
        )
        with filled.engine.begin() as connection:
            connection.execute(text(statement), {"s": seq})
        result = self.verification(filled)
        assert (result.fault_seq, result.fault) == (seq, fault)

    def test_an_erased_identity_is_not_a_fault(self, filled: Ledger) -> None:
        with filled.engine.begin() as connection:
            connection.execute(text("DELETE FROM pupil_identity"))
        assert self.verified_with_key(filled).ok

    def test_no_upn_or_date_of_birth_is_in_any_hashed_or_indexed_table(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        lines = simulate(60, 0.3, 12)
        write_all(
            writer, [(orjson.dumps(ln.event), Position.line("y", i)) for i, ln in enumerate(lines)]
        )
        secrets: set[str] = set()
        for ln in lines:
            data = ln.event.get("data", {})
            for pupil in data.get("pupils", []) or []:
                secrets.update(v for v in (pupil.get("upn"), pupil.get("dob")) if v)
            if isinstance(data.get("upn"), str):
                secrets.add(data["upn"])
        with ledger.engine.connect() as connection:
            for table in APPEND_ONLY_TABLES:
                # Through the tables' types: a deflated payload is searched as its text.
                rows = connection.execute(select(SQLModel.metadata.tables[table]))
                dump = json.dumps([list(r) for r in rows], default=str)
                leaked = [s for s in secrets if s in dump]
                assert not leaked, f"{table} holds {len(leaked)} plain identifiers"

    def test_a_pupil_query_finds_every_entry_naming_the_pupil(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        from tests.factory import census, left, line, referral, transfer, upn

        events = [
            left(),
            transfer(),
            census(pupils=[{"upn": upn(2)}, {"upn": upn(1)}]),
            referral(pupils=[{"upn": upn(3)}]),
        ]
        writer.write([(line(e), Position.line("f", i)) for i, e in enumerate(events, 1)])
        pupil = finder(ledger)(upn(1))
        with ledger.engine.connect() as connection:
            found = list(entries(connection, Filters(pupil_key=pupil)))
        assert [e.event_id for e in found] == [events[0]["id"], events[1]["id"], events[2]["id"]]

    # -- the alert outbox ------------------------------------------------------------------

    def outbox(self, ledger: Ledger) -> list[Any]:
        with ledger.engine.connect() as connection:
            return list(
                connection.execute(
                    text("SELECT seq, severity, body FROM alert_outbox ORDER BY seq")
                )
            )

    def test_a_breach_writes_a_pseudonymous_alert_with_its_entry(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        from tests.factory import line, referral, upn

        event = referral(
            recipient="agency:unheard-of",
            categories=["personal", "medical"],
            lawful_basis="public_task",
            special_condition="9.2.h",
        )
        outcome = writer.write([(line(event), Position.line("f", 1))])[0]
        assert outcome.decision.decision.value in ("breach", "review")
        [(seq, severity, body)] = self.outbox(ledger)
        alert = json.loads(body)
        assert seq == alert["seq"] == outcome.seq
        assert alert["event_id"] == event["id"]
        assert alert["pupil_keys"] == [finder(ledger)(upn(1))]
        assert severity == alert["severity"]
        assert upn(1) not in body

    def test_an_allowed_decision_or_a_redelivery_writes_no_alert(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        from tests.factory import census, line

        event = census(recipient="dfe", categories=["personal"], channel="collect")
        writer.write([(line(event), Position.line("f", 1))])
        writer.write([(line(event), Position.line("f", 2))])
        assert self.outbox(ledger) == []

    def test_an_alert_is_held_then_sent_unless_a_later_entry_re_decided_its_event(
        self, writer: LedgerWriter, ledger: Ledger
    ) -> None:
        from pipeline.ledger.writing.outbox import SUPERSEDED, due_alerts, mark_relayed
        from tests.factory import consent_given, line, referral

        early = referral(
            lawful_basis="consent",
            special_condition="9.2.a",
            consent_ref="C-9",
            categories=["personal", "medical"],
        )
        writer.write([(line(early), Position.line("f", 1))])  # no consent yet: a breach
        assert due_alerts(ledger, hold_seconds=3600).send == []  # held
        assert [a.seq for a in due_alerts(ledger).send] == [1]
        given = consent_given(ref="C-9", time="2026-07-01T09:00:00+01:00")
        writer.write([(line(given), Position.line("f", 2))])  # late: re-decides as allowed
        due = due_alerts(ledger)
        assert due.send == [] and due.superseded == [1]
        mark_relayed(ledger, due.superseded, SUPERSEDED)
        assert due_alerts(ledger) == type(due)([], [])
        assert self.verification(ledger).ok  # superseded for cause: no fault


class TestSQLiteLedger(LedgerContract):
    @pytest.fixture
    def url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.slow
class TestPostgresLedger(LedgerContract):
    @pytest.fixture
    def url(self, pg_url: str) -> str:
        return pg_url

    def test_truncate_is_refused(self, filled: Ledger) -> None:
        for table in APPEND_ONLY_TABLES:
            with (
                pytest.raises(LedgerRefused, match=f"{table} is append-only: TRUNCATE"),
                filled.engine.begin() as connection,
            ):
                connection.execute(text(f"TRUNCATE {table} CASCADE"))
