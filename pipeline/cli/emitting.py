"""``emit --wait recorded``: send a file's lines and keep the log's receipt of each.

A line counts delivered only when the log's signed receipt for it has come (the embedded
broker keeps records in memory: its acknowledgement promises nothing). With ``--receipts
FILE`` each receipt is appended as it comes, so an interrupted emit keeps what it got, and
running emit again with the same file sends only the lines that hold none: sending a line
again is safe, since the same event id is recorded once (its receipt says ``duplicate``).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, BinaryIO, NamedTuple

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from pipeline.checking import numbered_lines
from pipeline.policy.intake import read_event
from pipeline.transparency.delivery import OUTCOMES
from pipeline.transparency.note import Verifier
from pipeline.transport.kafka import RECEIPTS_TOPIC, KafkaConfig
from pipeline.transport.mis import MisProducer
from pipeline.transport.receipts import (
    Delivery,
    Held,
    KeptReceipt,
    Outgoing,
    append_to,
    held_for,
    receipt_line,
)


class Line(NamedTuple):
    """A line of the input: its number (as ``numbered_lines`` counts), the bytes sent,
    and the event id the log will name it by (None when it has no usable one)."""

    number: int
    raw: bytes
    event_id: str | None


def lines_of(stream: IO[bytes]) -> list[Line]:
    """The lines to send, each with the id the worker will read in it."""
    out = []
    for number, line in numbered_lines(stream):
        raw = line.strip()
        out.append(Line(number, raw, read_event(raw).key))
    return out


def kept_for(lines: list[Line], path: Path | None, log: Verifier) -> dict[int, KeptReceipt]:
    """The receipts already kept in ``path`` that the log signed for these very lines;
    each one that is not (forged, torn, or for what the line no longer carries) is said,
    and its line sent again."""
    if path is None:
        return {}
    kept, problems = held_for(path, log, {line.number: line.event_id for line in lines})
    for problem in problems:
        again = "; the line is sent again" if problem.startswith("line ") else ""
        print(f"sharing-audit: {path}: {problem}{again}", file=sys.stderr)
    return kept


@contextmanager
def _progress(err: Console, total: int) -> Iterator[tuple[Progress, TaskID, TaskID]]:
    """Two bars on a terminal: acknowledged by the broker, then recorded by the log."""
    bar = Progress(
        TextColumn("{task.description:>12}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    with bar:
        yield bar, bar.add_task("acknowledged", total=total), bar.add_task("recorded", total=total)


class Interrupted(Exception):
    """Ctrl-C while sending or waiting: how many lines hold a receipt by then."""

    def __init__(self, held: int) -> None:
        super().__init__(held)
        self.held = held


def send_for_receipts(
    config: KafkaConfig,
    todo: list[Line],
    topic: str | None,
    log: Verifier,
    timeout: float,
    keep: Path | None,
    err: Console,
    resend_after: float | None = None,
) -> Delivery:
    """Send ``todo`` and wait for their receipts, appending each to ``keep`` as it comes,
    and send again what lacks one after ``resend_after`` seconds without a receipt;
    :class:`Interrupted` on Ctrl-C (what was kept stays kept)."""
    records = [Outgoing(line.raw, line.event_id, topic) for line in todo]
    out: BinaryIO | None
    held: list[int] = []
    with (
        append_to(keep) if keep is not None else nullcontext() as out,
        MisProducer(config) as producer,
        _progress(err, len(todo)) as (bar, acked, recorded),
    ):

        def on_receipt(index: int, receipt: Held) -> None:
            if out is not None:
                out.write(receipt_line(todo[index].number, todo[index].event_id, receipt.note))
                out.flush()
            held.append(index)
            bar.advance(recorded)

        try:
            return producer.send_recorded(
                records, log, timeout, lambda _: bar.advance(acked), on_receipt, resend_after
            )
        except KeyboardInterrupt:
            raise Interrupted(len(held)) from None


#: The exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def interrupted(held: int, kept: Path | None) -> str:
    """What an interrupted emit says: what it holds, and how to send the rest."""
    if kept is None:
        return (
            f"interrupted: {held} lines hold a receipt, kept nowhere (--receipts FILE keeps "
            "them); running emit again sends every line, safely (each is recorded once)"
        )
    return (
        f"interrupted: {held} lines hold a receipt, kept in {kept}; run emit again with "
        f"--receipts {kept} to send only the lines that hold none"
    )


def failures_of(todo: list[Line], delivery: Delivery, timeout: float) -> list[str]:
    """One line for each line without a receipt, naming it and why, in file order."""
    why = {i: f"no receipt within {timeout:g}s" for i in delivery.missing}
    why.update(delivery.unsent)
    out = []
    for index, reason in sorted(why.items()):
        line = todo[index]
        named = f" (event {line.event_id})" if line.event_id else " (no event id)"
        out.append(f"line {line.number}: {reason}{named}")
    return out


def summary(delivery: Delivery, held_before: int, bootstrap: str) -> list[str]:
    """What the log recorded, by decision; what was held already; what was ignored."""
    decisions = Counter(h.receipt.decision for h in delivery.held.values())
    detail = ", ".join(f"{d} {decisions[d]}" for d in sorted(OUTCOMES) if decisions[d])
    lines = [
        f"recorded {len(delivery.held)} events sent to {bootstrap}"
        + (f" ({detail})" if detail else "")
        + (f"; {held_before} lines held a receipt already" if held_before else "")
    ]
    if delivery.ignored:
        reasons = ", ".join(f"{why}: {n}" for why, n in sorted(delivery.ignored.items()))
        total = sum(delivery.ignored.values())
        lines.append(f"ignored {total} records on {RECEIPTS_TOPIC} ({reasons})")
    return lines
