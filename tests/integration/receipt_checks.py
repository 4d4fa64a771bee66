"""What the log's receipts must prove once the faults are over, checked against the
ledger as an auditor would: each receipt names the leaf the ledger holds at its seq, and
that leaf is proven included in the first checkpoint the log signed after it."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path

import orjson
from sqlalchemy.engine import Connection

from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import entry_leaf_hashes, inclusion_proof
from pipeline.transparency.delivery import DeliveryReceipt, open_receipt
from pipeline.transparency.merkle import Hash, Node, verify_inclusion
from pipeline.transparency.note import Verifier, open_checkpoint
from pipeline.transport.receipts import Held


def receipts_by_line(path: Path, log: Verifier, events: list[str | None]) -> dict[int, Held]:
    """The receipts file ``path`` of an emit of ``events`` (line N carries ``events[N-1]``),
    each line's receipt and note: asserts it holds exactly one row per line, each a receipt the log
    signed for the event that line carries."""
    rows = [orjson.loads(row) for row in path.read_bytes().splitlines()]
    lines, every = [row["line"] for row in rows], set(range(1, len(events) + 1))
    assert sorted(lines) == sorted(every), (
        f"{len(rows)} rows for {len(events)} lines: {len(lines) - len(set(lines))} repeated, "
        f"{len(every - set(lines))} missing"
    )
    held: dict[int, Held] = {}
    for row in rows:
        note, line = row["receipt"].encode(), row["line"]
        receipt = open_receipt(note, log)
        assert row["event_id"] == receipt.event_id == events[line - 1], f"line {line}"
        held[line] = Held(receipt, note)
    return held


def assert_proven_in_the_first_checkpoint_after_each(
    url: str, receipts: Iterable[DeliveryReceipt], log: Verifier, timeout: float = 60
) -> None:
    """Every receipt's leaf is the ledger's at its seq, and is proven included in the
    smallest checkpoint the log signed that covers its seq (waiting, up to ``timeout``, for
    the checkpoint that covers the last one). Proof nodes are shared across receipts."""
    entries = {(r.seq, r.leaf) for r in receipts}
    last = max(seq for seq, _ in entries)
    ledger = Ledger.open(url)
    try:
        with ledger.engine.connect() as connection:
            roots = _signed_roots_covering(connection, last, log, timeout)
            sizes = sorted(roots)
            leaves = entry_leaf_hashes(connection, {seq for seq, _ in entries})
            known: dict[Node, Hash] = {}
            for seq, leaf in sorted(entries):
                assert leaves.get(seq) == leaf, f"the receipt of entry {seq} names another leaf"
                size = sizes[bisect_left(sizes, seq)]
                proof = inclusion_proof(connection, seq - 1, size, known)
                verify_inclusion(seq - 1, size, leaf, proof, roots[size])
    finally:
        ledger.engine.dispose()


def _signed_roots_covering(
    connection: Connection, seq: int, log: Verifier, timeout: float
) -> dict[int, Hash]:
    """Each signed checkpoint's size and root (each opened under the log's key), once one
    covers entry ``seq``."""
    deadline = time.monotonic() + timeout
    while True:
        rows = connection.exec_driver_sql("SELECT size, note FROM log_checkpoint").all()
        connection.commit()  # the next look reads what the worker signed since
        if any(int(size) >= seq for size, _ in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    roots: dict[int, Hash] = {}
    for size, note in rows:
        checkpoint, _ = open_checkpoint(note.encode(), log)
        assert checkpoint.size == int(size)
        roots[checkpoint.size] = checkpoint.root
    assert roots and max(roots) >= seq, f"no checkpoint covers entry {seq} after {timeout}s"
    return roots
