"""Checkpoints reach the witnesses off the writer's path: a witness that never answers,
answers a byte at a time or answers nonsense costs recording nothing, costs `log publish`
at most its deadline, and costs the other witnesses nothing; a witness that was away is
sent what it missed when it is back (sharing-audit worker, sharing-audit log publish)."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import cast

import orjson
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agents.publisher import Checkpointing
from agents.sink import LedgerSink
from agents.writer import WriterSpec
from pipeline.cli.main import app
from pipeline.cli.status import Watch
from pipeline.engine import Position
from pipeline.ledger.log.checkpoints import latest, record_cosignature, sign_if_grown
from pipeline.ledger.log.witnessing import DEADLINE, Witness, last_cosigned, witness_lag
from pipeline.ledger.reading.queries import entry_count
from pipeline.ledger.storage.store import ENTRY, Ledger
from pipeline.policy.pack import Policy
from pipeline.settings import DEFAULT_LOG_ORIGIN
from pipeline.transparency.note import (
    COSIGNATURE,
    Signature,
    Signer,
    Verifier,
    cosign,
    cosigned_by,
    open_checkpoint,
)
from pipeline.transparency.witness import parse_request
from pipeline.transport.backlog import Backlog
from pipeline.witness.app import create_witness
from pipeline.witness.state import witness_engine
from schemas.alerts import WITNESS_REFUSAL
from tests.integration.peers import Behaviour, Peer, answering, dribbling, peer, silent
from tests.integration.proxy import Proxy
from tests.integration.serving import served
from tests.integration.streaming import wait_until
from tests.integration.test_verifiable_log import ENV, LOG_KEY, events, ledger_with, record

pytestmark = pytest.mark.integration
runner = CliRunner()
LOG = Signer(DEFAULT_LOG_ORIGIN, bytes.fromhex(LOG_KEY))
WITNESS = Signer("witness.example.org/w1", bytes(range(1, 33)), COSIGNATURE)
ODD = Signer("odd.example.org/w2", bytes(range(2, 34)), COSIGNATURE)
KEY = bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"])


def publish(url: str, *witnesses: tuple[str, Signer], deadline: float = 5.0) -> tuple[int, str]:
    listed = [{"url": at, "vkey": signer.verifier.vkey()} for at, signer in witnesses]
    env = {
        **ENV,
        "SHARING_AUDIT_WITNESSES": orjson.dumps(listed).decode(),
        "SHARING_AUDIT_WITNESS_DEADLINE_SECONDS": str(deadline),
    }
    done = runner.invoke(app, ["log", "publish", "--db", url], env=env)
    return done.exit_code, done.output


def a_ledger(tmp_path: Path, raws: list[bytes]) -> tuple[str, Ledger]:
    """A SQLite ledger holding ``raws``, decided; its URL and itself."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    return url, ledger_with(url, raws)


def a_witness(tmp_path: Path, url: str) -> object:
    """A true witness of the log at ``url``, to be served."""
    log_vkey = runner.invoke(app, ["log", "vkey", "--db", url], env=ENV).stdout.strip()
    engine = witness_engine(f"sqlite:///{tmp_path}/witness.db")
    return create_witness(engine, WITNESS, [Verifier.parse(log_vkey)])


def refusals(url: str) -> int:
    with Ledger.open(url).engine.connect() as connection:
        kinds = connection.execute(select(ENTRY.c.kind)).scalars()
        return sum(1 for kind in kinds if kind == WITNESS_REFUSAL)


# -- sharing-audit log publish ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["²", "", "-1", "12 apples", "9" * 5000],
    ids=["superscript-two", "empty", "negative", "words", "5000-digits"],
)
def test_log_publish_names_a_witness_whose_409_holds_no_size_and_publishes_to_the_next(
    tmp_path: Path, body: str
) -> None:
    url, _ = a_ledger(tmp_path, events(10))
    with peer(answering(409, body.encode())) as odd, served(a_witness(tmp_path, url)) as true:
        status, said = publish(url, (odd.url, ODD), (true, WITNESS))
    assert status == 1, said
    assert f"{ODD.name}: not cosigned size" in said and "HTTP 409" in said, said
    assert f"{WITNESS.name}: cosigned size" in said, said
    assert "Traceback" not in said
    assert refusals(url) == 0  # nonsense is the witness's fault, not a sign of a fork


def test_log_publish_gives_a_witness_that_answers_a_byte_at_a_time_its_deadline_only(
    tmp_path: Path,
) -> None:
    url, _ = a_ledger(tmp_path, events(10))
    said: list[tuple[int, str]] = []
    with peer(dribbling) as slow, served(a_witness(tmp_path, url)) as true:
        run = threading.Thread(
            target=lambda: said.append(publish(url, (slow.url, ODD), (true, WITNESS), deadline=1.0))
        )
        run.start()
        run.join(30)  # the dribble never ends: only a deadline over the whole answer ends it
        finished = not run.is_alive()
    run.join()
    assert finished, "log publish waited on a witness answering a byte at a time"
    status, text = said[0]
    assert status == 1 and f"{ODD.name}: not cosigned" in text, text
    assert "no whole answer within 1 s" in text, text
    assert f"{WITNESS.name}: cosigned size" in text, text


def test_log_publish_names_a_witness_answering_garbage_with_200_without_a_traceback(
    tmp_path: Path,
) -> None:
    url, _ = a_ledger(tmp_path, events(10))
    with peer(answering(200, "\x1b[2J²\n— ".encode())) as odd:
        status, said = publish(url, (odd.url, ODD))
    assert status == 1 and f"{ODD.name}: REFUSED" in said, said
    assert "not its cosignature" in said and "\x1b" not in said and "Traceback" not in said


# -- the worker's writer ---------------------------------------------------------------------


def batch(first: int, raws: list[bytes]) -> list[tuple[bytes, Position]]:
    return [(raw, Position("sharing.census", 0, first + i)) for i, raw in enumerate(raws)]


def writer_sink(
    url: str, policy: Policy, witnesses: list[Witness], deadline: float = DEADLINE
) -> LedgerSink:
    """The worker's sink, its writer process signing a checkpoint every 20th of a second
    and sending it to ``witnesses``."""
    checkpoints = Checkpointing(LOG, 0.05, witnesses=tuple(witnesses), deadline=deadline)
    return LedgerSink(WriterSpec(url, policy, KEY, "WARNING", checkpoints), first_delay=0.01)


def test_the_writer_goes_on_recording_while_a_witness_holds_a_checkpoint_unanswered(
    tmp_path: Path, policy: Policy
) -> None:
    url, ledger = a_ledger(tmp_path, [])
    raws = events(10)
    with peer(silent) as quiet:
        sink = writer_sink(url, policy, [Witness(quiet.url, ODD.verifier)], deadline=600)

        async def record() -> bool:
            await sink.write(batch(0, raws[:50]))
            asked = await asyncio.to_thread(quiet.asked.wait, 30)
            await sink.write(batch(50, raws[50:]))  # while the witness holds a checkpoint
            return asked

        try:
            asked = asyncio.run(record())
            holding = quiet.held()
        finally:
            sink.close()
    assert asked, "no checkpoint was sent to the witness"
    assert holding == 1, "the writer gave up on the witness before it recorded the next batch"
    with ledger.engine.connect() as connection:
        assert entry_count(connection) >= len(raws)


def test_ledger_verify_checks_the_cosignature_of_what_a_true_witness_answers(
    tmp_path: Path,
) -> None:
    """End to end: the log published to a witness of this project, then ``ledger verify
    --checkpoint`` at that witness's URL, listed in SHARING_AUDIT_WITNESSES: its answer
    bears the cosignature the configured key verifies."""
    url, _ = a_ledger(tmp_path, events(10))
    with served(a_witness(tmp_path, url)) as witness:
        status, said = publish(url, (witness, WITNESS))
        assert status == 0, said
        listed = [{"url": witness, "vkey": WITNESS.verifier.vkey()}]
        env = {**ENV, "SHARING_AUDIT_WITNESSES": orjson.dumps(listed).decode()}
        done = runner.invoke(
            app, ["ledger", "verify", "--db", url, "--checkpoint", witness], env=env
        )
    assert done.exit_code == 0, done.output
    assert f"cosigned by the witness {WITNESS.name} at " in done.output
    assert "(its cosignature verified)" in done.output


def test_a_witness_that_was_away_is_sent_the_latest_checkpoint_when_it_is_back(
    tmp_path: Path, policy: Policy
) -> None:
    url, ledger = a_ledger(tmp_path, [])
    raws = events(20)
    with served(a_witness(tmp_path, url)) as true:
        proxy = Proxy(("127.0.0.1", int(true.rsplit(":", 1)[1])))
        proxy.up()
        witness = Witness(f"http://127.0.0.1:{proxy.port}", WITNESS.verifier)
        sink = writer_sink(url, policy, [witness])
        try:
            asyncio.run(sink.write(batch(0, raws[:40])))
            assert wait_until(lambda: cosigned_to_the_latest(ledger, witness), 30)
            held = last_cosigned(ledger, witness)
            proxy.down()
            asyncio.run(sink.write(batch(40, raws[40:])))
            assert wait_until(lambda: signed_size(ledger) == head(ledger), 30)
            assert last_cosigned(ledger, witness) == held  # away: missed what came since
            proxy.up()  # back, and nothing more is recorded
            back = wait_until(lambda: cosigned_to_the_latest(ledger, witness), 60)
        finally:
            sink.close()
            proxy.down()
    assert back, "the witness was never sent the checkpoints it missed"
    assert last_cosigned(ledger, witness) == head(ledger) > held


def test_a_witness_that_never_answers_costs_the_other_witnesses_nothing(
    tmp_path: Path, policy: Policy
) -> None:
    url, ledger = a_ledger(tmp_path, [])
    raws = events(10)
    with peer(silent) as quiet, served(a_witness(tmp_path, url)) as true:
        witness = Witness(true, WITNESS.verifier)
        sink = writer_sink(url, policy, [Witness(quiet.url, ODD.verifier), witness], 600)
        try:
            for first in range(0, len(raws), 10):
                asyncio.run(sink.write(batch(first, raws[first : first + 10])))
            signed_all = wait_until(lambda: signed_size(ledger) == head(ledger), 30)
            cosigned = wait_until(lambda: cosigned_to_the_latest(ledger, witness), 30)
            holding = quiet.held()
        finally:
            sink.close()
    assert signed_all and cosigned, "the true witness waited on the silent one"
    assert holding == 1


def signed_size(ledger: Ledger) -> int:
    with ledger.engine.connect() as connection:
        signed = latest(connection)
    return 0 if signed is None else signed.checkpoint.size


def head(ledger: Ledger) -> int:
    with ledger.engine.connect() as connection:
        return int(Ledger.head(connection)[0])


def cosigned_to_the_latest(ledger: Ledger, witness: Witness) -> bool:
    size = signed_size(ledger)
    return size > 0 and last_cosigned(ledger, witness) == size


def test_witness_lag_is_what_the_slowest_witness_has_not_cosigned_of_the_latest_checkpoint(
    tmp_path: Path,
) -> None:
    _, ledger = a_ledger(tmp_path, events(5))
    first = sign_if_grown(ledger, LOG)
    assert first is not None
    record_cosignature(ledger, first.checkpoint.size, WITNESS.name, "— line\n")
    record(ledger, events(5, seed=8), first=100)
    second = sign_if_grown(ledger, LOG)
    assert second is not None
    record_cosignature(ledger, second.checkpoint.size, ODD.name, "— line\n")
    with ledger.engine.connect() as connection:
        assert witness_lag(connection, [ODD.name]) == 0
        behind = second.checkpoint.size - first.checkpoint.size
        assert witness_lag(connection, [WITNESS.name, ODD.name]) == behind > 0
        assert witness_lag(connection, ["never.example/w3"]) == second.checkpoint.size


class NoBroker:
    """The consumer group's lag, as a worker with nothing left to read has it."""

    def records(self) -> int:
        return 0


def test_the_workers_status_line_shows_how_far_behind_its_witnesses_are(tmp_path: Path) -> None:
    _, ledger = a_ledger(tmp_path, events(5))
    signed = sign_if_grown(ledger, LOG)
    assert signed is not None
    lag = cast(Backlog, NoBroker())
    watch = Watch(ledger, tmp_path / "worker.log", lag, witnesses=[WITNESS.name])
    assert watch.line().plain.endswith(f" | witness lag {signed.checkpoint.size:,}")


def test_log_publish_says_so_without_a_traceback_when_the_checkpoint_folder_is_unwritable(
    tmp_path: Path,
) -> None:
    url, _ = a_ledger(tmp_path, events(5))
    (tmp_path / "not-a-folder").write_text("a file")
    env = {
        **ENV,
        "SHARING_AUDIT_WITNESSES": orjson.dumps(
            [{"url": "http://127.0.0.1:9", "vkey": ODD.verifier.vkey()}]
        ).decode(),
        "SHARING_AUDIT_CHECKPOINT_DIR": str(tmp_path / "not-a-folder"),
    }
    done = runner.invoke(app, ["log", "publish", "--db", url], env=env)
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert "not-a-folder" in done.output, done.output


def cosigning_with_extra_lines(extra: str) -> tuple[list[Peer], Behaviour]:
    """A witness that cosigns what it is sent (as WITNESS), and puts ``extra`` signature
    lines after its cosignature; the list is to hold the peer, whose requests it reads."""
    held: list[Peer] = []

    def answer(connection: socket.socket, stopped: threading.Event) -> None:
        body = held[0].requests[-1].partition(b"\r\n\r\n")[2]
        _, note = parse_request(body)
        line = cosign(note, WITNESS, 1_700_000_000).line().encode() + extra.encode()
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {len(line)}\r\nConnection: close\r\n\r\n".encode()
            + line
        )
        connection.close()

    return held, answer


def test_a_witness_cannot_put_a_failing_log_signature_into_the_published_checkpoint(
    tmp_path: Path,
) -> None:
    """Only the witness's own cosignature line is kept: a line bearing the log's name and
    key id that fails would make every verifier (Go's note.Open, audit verify) refuse the
    checkpoint the log serves and writes out, whoever else cosigned it."""
    url, ledger = a_ledger(tmp_path, events(10))
    forged = Signature(LOG.name, LOG.verifier.id, bytes(64)).line()
    held, behaviour = cosigning_with_extra_lines(forged)
    with peer(behaviour) as odd:
        held.append(odd)
        status, said = publish(url, (odd.url, WITNESS))
    assert status == 0 and f"{WITNESS.name}: cosigned size" in said, said
    with ledger.engine.connect() as connection:
        signed = latest(connection)
    assert signed is not None
    published = signed.with_cosignatures()
    _, note = open_checkpoint(published, LOG.verifier)
    assert cosigned_by(note, WITNESS.verifier) == 1_700_000_000
    assert published.count(b"\n\xe2\x80\x94 ") == 2  # the log's signature and the cosignature
