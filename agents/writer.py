"""The ledger writer's own process: decisions and appends off the Faust worker's core.

Faust keeps one core busy moving records; deciding and appending them is as much work
again. In a process of their own they run on the other core, and the worker's event loop
stays free to heartbeat and fetch. Everything crossing the process boundary is plain
data: raw records in, small results out, and failures as tagged results rather than
exceptions (a driver's exception does not always survive pickling). Signing checkpoints
and sending them to witnesses happen beside the writing, in threads of this process
(``agents.publisher``): a batch never waits on a witness.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from agents.publisher import Checkpointing, Publisher
from pipeline.engine import Outcome, Position
from pipeline.ledger.storage.errors import is_unavailable
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.ingest import LedgerWriter, Record
from pipeline.ledger.writing.keys import KeyRefused, bind_key
from pipeline.ledger.writing.outbox import Due, due_alerts, mark_relayed
from pipeline.ledger.writing.receipting import signed_receipts
from pipeline.logging import configure as configure_logging
from pipeline.logging import get_logger
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Schools
from pipeline.pseudonym import pseudonymiser
from pipeline.transparency.note import Signer
from schemas.decisions import Decision

log = get_logger(__name__)

_writer: LedgerWriter | None = None
_writes = 0
_key_bound = False
_publisher: Publisher | None = None
_receipts_signer: Signer | None = None  # the log's key, which signs each record's receipt


@dataclass(frozen=True, slots=True)
class WriterSpec:
    """All a writer process needs to build its ledger writer."""

    database_url: str
    policy: Policy
    pseudonym_key: bytes
    log_level: str = "INFO"
    checkpoints: Checkpointing | None = None  # None: the log has no key, nothing is signed
    schools: Schools | None = None  # the register: each school's events by its own pack


class Handled(NamedTuple):
    """What the agents need to know of one outcome: where its record was, and the decision.
    A named tuple: one per record is made, and comes back from the writer process."""

    kind: str
    position: Position
    event_id: Any
    decision: Decision
    receipt: bytes | None = None  # the log's signed receipt, for a record read from a topic


@dataclass(frozen=True, slots=True)
class Failed:
    """A call that failed: ``unavailable`` when the database could not be reached;
    ``error``, the exception's type name (what logs and a rejection's reason name);
    ``detail``, its message, cut short (it may quote the database, never an event)."""

    unavailable: bool
    error: str
    detail: str = ""

    @classmethod
    def of(cls, exc: Exception, unavailable: bool | None = None) -> Failed:
        """The failure an exception is, unavailable when the database could not be
        reached (unless said otherwise)."""
        gone = is_unavailable(exc) if unavailable is None else unavailable
        return cls(gone, type(exc).__name__, str(exc)[:200])

    def __str__(self) -> str:
        return f"{self.error}: {self.detail}" if self.detail else self.error


def start(spec: WriterSpec) -> None:
    """Process initialiser: open the ledger and build the writer once, and start the
    publisher's threads beside it (on a ledger of their own: their own connections)."""
    global _writer, _publisher, _receipts_signer
    _exit_with_parent()
    configure_logging(level=spec.log_level)
    if spec.checkpoints is not None:
        _receipts_signer = spec.checkpoints.signer
        _publisher = Publisher(Ledger.open(spec.database_url), spec.checkpoints)
        _publisher.start()
    _writer = LedgerWriter(
        Ledger.open(spec.database_url),
        spec.policy,
        pseudonymiser(spec.pseudonym_key),
        spec.schools,
    )
    # A batch of thousands of records makes hundreds of thousands of objects that live
    # exactly as long as the batch. The collector's automatic passes, run while they are
    # all alive, traverse them again and again for nothing; a pass between batches finds
    # only what outlived its batch. Nothing made before this point needs collecting.
    gc.freeze()
    gc.disable()


def _exit_with_parent() -> None:
    """Leave when the worker does. A worker killed outright (SIGKILL, the OOM killer) cannot
    shut its pool down, and the pool's pipe never closes for a forked child that holds both
    ends, so the child watches its parent instead. Leaving mid-transaction rolls it back,
    and the records it held were never acked: the next worker records them."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run(function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except KeyRefused as exc:  # the key was rotated since: wait, saying why (as at start)
        return Failed(True, f"KeyRefused: {exc}")
    except Exception as exc:
        return Failed.of(exc)


def _bound_key() -> Failed | None:
    """Check, once, that the key is the ledger's before anything is written with it (the
    worker's start could not when the database was down). A wrong key is reported as the
    ledger being unavailable: the worker waits, saying why, and acks nothing."""
    global _key_bound
    if _key_bound:
        return None
    assert _writer is not None
    try:
        bind_key(_writer.ledger, _writer.pseudonym)
    except KeyRefused as exc:
        return Failed.of(exc, unavailable=True)
    except Exception as exc:
        return Failed.of(exc)
    _key_bound = True
    return None


def write(records: list[Record], undecidable: str | None = None) -> list[Handled] | Failed:
    assert _writer is not None
    writer = _writer
    refused = _bound_key()
    if refused is not None:
        return refused

    def go() -> list[Handled]:
        outcomes = writer.write(records, undecidable)  # committed once it returns
        receipts = _receipts_for(outcomes)
        return [
            Handled(o.kind, o.position, o.event_id, o.decision, receipt)
            for o, receipt in zip(outcomes, receipts, strict=True)
        ]

    result: list[Handled] | Failed = _run(go)
    _collect_between_batches()
    return result


def _receipts_for(outcomes: list[Outcome]) -> list[bytes | None]:
    """The log's receipt for each outcome's record, signed here, after the commit: none
    where the log has no key (the worker said so at start) or the outcome is owed none."""
    if _receipts_signer is None:
        return [None] * len(outcomes)
    return signed_receipts(outcomes, _receipts_signer, int(time.time()))


def _collect_between_batches() -> None:
    """The collector's generations, run by batches rather than by allocations: the young
    one after every batch, the middle one every tenth, all of them every hundredth (what
    cyclic garbage outlives a batch is freed within a hundred batches)."""
    global _writes
    _writes += 1
    gc.collect(2 if _writes % 100 == 0 else 1 if _writes % 10 == 0 else 0)


def due(hold_seconds: float, limit: int) -> Due | Failed:
    assert _writer is not None
    result: Due | Failed = _run(due_alerts, _writer.ledger, hold_seconds, limit)
    return result


def mark(seqs: list[int], status: str) -> Failed | None:
    assert _writer is not None
    result: Failed | None = _run(mark_relayed, _writer.ledger, seqs, status)
    return result
