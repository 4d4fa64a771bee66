"""The log holds itself to its maximum merge delay (MMD): when the checkpoint signer stops
signing, receipted entries outside every signed checkpoint for longer than the MMD are a
high-severity incident on the DPO's desk, raised once when the miss begins."""

from __future__ import annotations

import time
from datetime import timedelta

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from agents.publisher import Checkpointing, Publisher
from pipeline.api.app import create_api
from pipeline.cli.main import app
from pipeline.engine import Position
from pipeline.incidents.desk import incidents
from pipeline.ledger.log.checkpoints import sign_if_grown
from pipeline.ledger.log.merging import check_merge_delay, unmerged
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import ENTRY, OUTBOX, Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from pipeline.settings import DEFAULT_LOG_ORIGIN
from pipeline.transparency.note import Signer
from pipeline.users import Role, add_user
from schemas.alerts import MERGE_DELAY_MISSED, Alert
from tests.integration.streaming import wait_until
from tests.integration.test_verifiable_log import ENV, LOG_KEY, events

pytestmark = pytest.mark.integration
KEY = bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"])
LOG = Signer(DEFAULT_LOG_ORIGIN, bytes.fromhex(LOG_KEY))


class AwayKeyStore(Signer):
    """The log's key held where it cannot be reached now (a key store that stopped
    answering): every signature it is asked for fails."""

    def sign(self, message: bytes) -> bytes:
        raise OSError("the key store holding the log's key does not answer")


def received(url: str, raws: list[bytes], first: int = 0) -> Ledger:
    """A ledger holding ``raws`` as the worker records them: read from a topic, so each
    is owed a receipt."""
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    writer = LedgerWriter(ledger, load_pack(), pseudonymiser(KEY))
    writer.write([(raw, Position("sharing.census", 0, first + i)) for i, raw in enumerate(raws)])
    return ledger


def missed(ledger: Ledger) -> list[int]:
    with ledger.engine.connect() as connection:
        kinds = connection.execute(select(ENTRY.c.seq).where(ENTRY.c.kind == MERGE_DELAY_MISSED))
        return [int(seq) for seq in kinds.scalars()]


def test_a_signer_that_cannot_sign_past_the_merge_delay_is_one_high_severity_incident(
    db_url: str,
) -> None:
    ledger = received(db_url, events(10)[:20])
    away = AwayKeyStore(LOG.name, LOG.private)
    publisher = Publisher(ledger, Checkpointing(away, 0.05, merge_delay=2.0))
    publisher.start()
    try:
        raised = wait_until(lambda: bool(missed(ledger)), 20)
        time.sleep(0.6)  # a dozen more turns of the signer while the miss lasts
    finally:
        publisher.stop()
    assert raised, "the signer never said the log missed its merge delay"
    (seq,) = missed(ledger)
    with ledger.engine.connect() as connection:
        body = connection.execute(select(OUTBOX.c.body).where(OUTBOX.c.seq == seq)).scalar_one()
        (incident,) = [
            i for i in incidents(connection).values() if i.cause.rule == "log.merge_delay_missed"
        ]
    alert = Alert.model_validate({**orjson.loads(body), "seq": seq})
    assert alert.severity == "high" and alert.kind == MERGE_DELAY_MISSED and alert.pupil_keys == []
    assert incident.severity == "high" and incident.entries == (seq,)
    (reason,) = alert.reasons
    assert "the log failed its own promise" in reason and "within 2 seconds" in reason
    assert "20 receipted entries" in reason and "key store holding the log's key" in reason
    verified = CliRunner().invoke(app, ["ledger", "verify", "--db", db_url], env=ENV)
    assert verified.exit_code == 0, verified.output


def test_a_signer_that_signs_keeps_the_promise_and_raises_nothing(db_url: str) -> None:
    ledger = received(db_url, events(10)[:20])
    publisher = Publisher(ledger, Checkpointing(LOG, 0.05, merge_delay=0.5))
    publisher.start()
    try:
        time.sleep(1.5)
    finally:
        publisher.stop()
    assert missed(ledger) == []
    with ledger.engine.connect() as connection:
        assert unmerged(connection).entries == 0


def test_a_miss_is_told_once_while_it_lasts_and_again_when_a_new_one_begins(db_url: str) -> None:
    ledger = received(db_url, events(4)[:10])
    with ledger.engine.connect() as connection:
        oldest = unmerged(connection).oldest
    assert oldest is not None
    assert check_merge_delay(ledger, 60, now=oldest + timedelta(seconds=59)) is None
    first = check_merge_delay(ledger, 60, now=oldest + timedelta(seconds=61))
    assert first is not None
    assert check_merge_delay(ledger, 60, now=oldest + timedelta(hours=1)) is None
    assert sign_if_grown(ledger, LOG) is not None  # signing is back: the miss has ended
    assert check_merge_delay(ledger, 60, now=oldest + timedelta(hours=1)) is None
    received(db_url, events(4, seed=9)[:5], first=100)
    second = check_merge_delay(ledger, 60, now=oldest + timedelta(hours=2))
    assert second is not None and missed(ledger) == [first, second]


def test_entries_owed_no_receipt_never_miss_the_merge_delay(db_url: str) -> None:
    ledger = Ledger.open(db_url)
    schema.upgrade(ledger.engine)
    writer = LedgerWriter(ledger, load_pack(), pseudonymiser(KEY))
    writer.write([(raw, Position.line("term.jsonl", i)) for i, raw in enumerate(events(3)[:5])])
    with ledger.engine.connect() as connection:
        assert unmerged(connection).entries == 0
    assert check_merge_delay(ledger, 0.0) is None


def test_the_desk_names_the_missed_merge_delay_in_plain_words(sqlite_url: str) -> None:
    ledger = received(sqlite_url, events(4)[:3])
    with ledger.engine.connect() as connection:
        oldest = unmerged(connection).oldest
    assert oldest is not None
    seq = check_merge_delay(ledger, 60, "OSError: no key", now=oldest + timedelta(minutes=5))
    desk = TestClient(create_api(ledger, policy=load_pack(), pseudonym=pseudonymiser(KEY)))
    headers = {"Authorization": f"Bearer {add_user(ledger, 'dpo', Role.DPO)}"}
    listed = desk.get("/incidents", headers=headers)
    assert "log.merge_delay_missed" in listed.text
    shown = desk.get(f"/incidents/{seq}", headers=headers)
    assert shown.status_code == 200 and "failed its own promise" in shown.text


def test_the_worker_holds_its_signer_to_the_mmd_it_is_configured_with(sqlite_url: str) -> None:
    from pipeline.cli.worker import checkpointing
    from pipeline.settings import Settings

    configured = Settings(log_key=LOG_KEY, checkpoint_seconds=10, max_merge_delay_seconds=90)
    how = checkpointing(configured, sqlite_url)
    assert how is not None and how.promised_delay() == 90
    derived = checkpointing(Settings(log_key=LOG_KEY, checkpoint_seconds=10), sqlite_url)
    assert derived is not None and derived.promised_delay() == 60


def test_ledger_stats_says_how_many_receipted_entries_await_a_checkpoint_and_a_missed_mmd(
    sqlite_url: str,
) -> None:
    ledger = received(sqlite_url, events(4)[:3])
    stats = ["ledger", "stats", "--db", sqlite_url]
    env = {**ENV, "SHARING_AUDIT_MAX_MERGE_DELAY_SECONDS": "3600"}
    waiting = CliRunner().invoke(app, stats, env=env)
    assert "receipted entries in no signed checkpoint: 3, the oldest for 0 s" in waiting.output
    assert "(the log promises 3600 s)" in waiting.output and "MISSED" not in waiting.output
    time.sleep(1.1)
    env["SHARING_AUDIT_MAX_MERGE_DELAY_SECONDS"] = "1"
    late = CliRunner().invoke(app, stats, env=env)
    assert "the maximum merge delay is MISSED (the log promises 1 s)" in late.output
    assert sign_if_grown(ledger, LOG) is not None
    signed = CliRunner().invoke(app, stats, env=env)
    assert "receipted entries in no signed checkpoint: none" in signed.output
