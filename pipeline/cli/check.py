"""``sharing-audit check`` and ``simulate``: a file of events decided with the engine the
agents use, and a simulated school year to try it on."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.checking import Decider, Result, Summary, check_lines, in_memory, numbered_lines
from pipeline.cli.exits import fail, open_events, policy_or_fail, schools_or_fail
from pipeline.cli.options import (
    DATABASE_SETTING,
    PolicyOption,
    SchoolsOption,
    open_ledger,
    pseudonym_for,
)
from pipeline.cli.terminal import result_row, summary_table
from pipeline.engine import Engine
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.transport.processes import say

_PROGRESS_MIN_BYTES = 1 << 20


class Format(StrEnum):
    jsonl = "jsonl"
    table = "table"


def check(
    file: Annotated[
        str, typer.Argument(help="JSON Lines file of events, or - for standard input.")
    ],
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
    output: Annotated[
        Format | None,
        typer.Option("--format", "-f", help="jsonl, or table (the default on a terminal)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Also append the decisions to the ledger at this URL (only this: without "
            f"--db, check writes to no ledger, even with {DATABASE_SETTING} set).",
        ),
    ] = None,
    batch: Annotated[
        int, typer.Option(min=1, max=10_000, help="Lines per ledger transaction.")
    ] = 500,
) -> None:
    """Decide a file of events in file order, with the engine the agents use."""
    pack = policy_or_fail(policy)
    register = schools_or_fail(schools)
    decide_batch: Decider
    if db is not None:
        writer = LedgerWriter(open_ledger(db), pack, pseudonym_for(db), register)
        decide_batch = writer.write
    else:
        decide_batch, batch = in_memory(Engine(pack, schools=register)), 1
        if os.environ.get(DATABASE_SETTING):
            # A trial run never seals anything in the ledger a deployment names, but one
            # who set the variable for the other commands is told, not left to wonder.
            say(
                f"check decides in memory and writes nothing to the ledger {DATABASE_SETTING} "
                "names (give --db URL to append the decisions to a ledger)"
            )
    stream, size = open_events(file)
    fmt = output or (Format.table if sys.stdout.isatty() else Format.jsonl)
    err = Console(stderr=True)
    show_progress = err.is_terminal and size is not None and size >= _PROGRESS_MIN_BYTES
    emit, finish = _jsonl_sink() if fmt is Format.jsonl else _table_sink()
    # Everything alive now (modules, the policy) lives for the whole run: keeping it out
    # of the collector's passes takes about a fifth off a large file's run time.
    gc.freeze()
    try:
        with stream, _progress(err, size, show_progress) as advance:
            summary = check_lines(
                numbered_lines(stream), decide_batch, emit, advance, source=file, batch=batch
            )
        finish(summary)
    except BrokenPipeError:
        # The reader (``head``, say) has gone: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    if fmt is Format.jsonl and err.is_terminal:
        err.print(summary_table(summary))


class _progress:
    """A byte-count progress bar on standard error, or nothing."""

    def __init__(self, console: Console, size: int | None, enabled: bool) -> None:
        self.bar = (
            Progress(
                TextColumn("checking"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            if enabled
            else None
        )
        self.size = size

    def __enter__(self) -> Callable[[int], None] | None:
        if self.bar is None:
            return None
        self.bar.start()
        task = self.bar.add_task("check", total=self.size)
        bar = self.bar
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _jsonl_sink() -> tuple[Callable[[Result], None], Callable[[Summary], None]]:
    out = sys.stdout.buffer
    write = out.write

    def emit(result: Result) -> None:
        write(orjson.dumps(result) + b"\n")

    def finish(summary: Summary) -> None:
        out.flush()

    return emit, finish


def _table_sink() -> tuple[Callable[[Result], None], Callable[[Summary], None]]:
    console = Console(highlight=False)

    def emit(result: Result) -> None:
        console.print(result_row(result))

    def finish(summary: Summary) -> None:
        console.print(summary_table(summary))

    return emit, finish


def simulate(
    pupils: Annotated[int, typer.Option(min=1, help="How many pupils (schools of 500).")] = 500,
    violation_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of events with a violation.")
    ] = 0.05,
    seed: Annotated[int, typer.Option(help="Same seed, same year.")] = 1,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Events file (default: standard output).")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(help="Also write the true decision of each line here.")
    ] = None,
) -> None:
    """Write a realistic school year of events as JSON Lines, for trials and demos."""
    from pipeline.simulate import simulate as simulate_year

    lines = simulate_year(pupils, violation_rate, seed)
    try:
        with _output(out) as stream:
            for line in lines:
                stream.write(orjson.dumps(line.event) + b"\n")
        if truth is not None:
            with truth.open("wb") as stream:
                for number, line in enumerate(lines, 1):
                    expected = line.expected
                    record = {
                        "line": number,
                        "event_id": expected.event_id,
                        "decision": expected.decision,
                        "rules": list(expected.rules),
                    }
                    stream.write(orjson.dumps(record) + b"\n")
    except OSError as exc:
        fail(f"cannot write {exc.filename}: {exc.strerror or exc}")
    print(f"{len(lines)} events for {pupils} pupils", file=sys.stderr)


@contextmanager
def _output(path: Path | None) -> Iterator[IO[bytes]]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.flush()
    else:
        with path.open("wb") as stream:
            yield stream
