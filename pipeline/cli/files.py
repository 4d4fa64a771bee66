"""``sharing-audit ctf events``, ``census events`` and ``watch``: the files an MIS already
writes (Common Transfer Files, School Census returns) as contract events, on standard
output for ``check`` or ``emit``, or sent from the MIS's export folder as they appear."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from pipeline.cli.exits import fail, policy_or_fail
from pipeline.cli.options import (
    BrokerOption,
    DbOption,
    PolicyOption,
    VkeyOption,
    broker_config,
    log_verifier_or_fail,
)
from pipeline.cli.status import Stop
from pipeline.cli.stream import Wait
from pipeline.files.events import FileKind, file_events, stream_events
from pipeline.files.gias import Gias, read_gias
from pipeline.files.safe_xml import FileRefused
from pipeline.files.watch import (
    DONE,
    EXPORTS,
    RECEIPTS,
    REJECTED,
    FolderWatcher,
    Outcome,
    Send,
)
from pipeline.plural import counted
from pipeline.policy.intake import read_event
from pipeline.shown import shown_text
from pipeline.transparency.note import Verifier
from pipeline.transport.kafka import KafkaUnavailable
from pipeline.transport.mis import DeliveryError, MisProducer
from pipeline.transport.receipts import Outgoing, deliver_keeping
from schemas.events import Channel

ctf_app = typer.Typer(help="Common Transfer Files as contract events.", no_args_is_help=True)
census_app = typer.Typer(help="School Census returns as contract events.", no_args_is_help=True)

FilesArgument = Annotated[list[Path], typer.Argument(help="The XML files, as the MIS wrote them.")]
GiasOption = Annotated[
    str | None,
    typer.Option(
        "--gias",
        help="A Get Information About Schools extract (the DfE's edubasealldata CSV), to "
        "resolve schools named by DfE number to their URN.",
    ),
]


def _gias(path: str | None) -> Gias:
    try:
        return read_gias(path) if path else Gias()
    except FileRefused as exc:
        fail(shown_text(exc))


def _print_events(
    files: list[Path], kind: FileKind, policy: str | None, gias: str | None, channel: str | None
) -> None:
    """Each file's events as JSON Lines on standard output; a file that cannot be read is
    named on standard error and gives none (exit 2 at the end)."""
    pack = policy_or_fail(policy)
    schools = _gias(gias)
    out = sys.stdout.buffer
    refused = 0
    for path in files:
        try:
            converted = file_events(path, pack, schools, kind, channel)
        except FileRefused as exc:
            print(f"sharing-audit: {shown_text(exc)}", file=sys.stderr)
            refused += 1
            continue
        for note in converted.notes:
            print(f"sharing-audit: note: {shown_text(note)}", file=sys.stderr)
        out.write(b"".join(orjson.dumps(event) + b"\n" for event in converted.events))
        out.flush()
    if refused:
        fail(f"{refused} of {len(files)} files could not be read: none of their events given")


@ctf_app.command("events")
def ctf_events(
    files: FilesArgument,
    gias: GiasOption = None,
    channel: Annotated[
        Channel | None,
        typer.Option(help="How the files were sent (default: the pack's, s2s)."),
    ] = None,
    policy: PolicyOption = None,
) -> None:
    """Each CTF's pupils as transfer events to its destination school, JSON Lines on
    standard output (for check, emit or a pipe)."""
    _print_events(files, "ctf", policy, gias, channel.value if channel else None)


@census_app.command("events")
def census_events(
    files: FilesArgument, gias: GiasOption = None, policy: PolicyOption = None
) -> None:
    """Each census return as one census event to the DfE naming every pupil in it, JSON
    Lines on standard output."""
    _print_events(files, "census", policy, gias, None)


def watch(
    folder: Annotated[Path, typer.Argument(help="The folder the MIS exports into.")],
    broker: BrokerOption = None,
    gias: GiasOption = None,
    policy: PolicyOption = None,
    settle: Annotated[
        float,
        typer.Option(min=0, help="Seconds a file must be unchanged to count as complete."),
    ] = 5.0,
    once: Annotated[
        bool, typer.Option("--once", help="Handle what is there now, then stop.")
    ] = False,
    wait: Annotated[
        Wait,
        typer.Option(
            help="recorded: a file is done once the log's signed receipt of each of its "
            "events has come, kept beside it in done/NAME.receipts.jsonl; acked: once the "
            "broker took each (it promises no more; no receipts are kept)."
        ),
    ] = Wait.recorded,
    timeout: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds to wait for a file's receipts after the broker took its last "
            "event; a file still lacking some stays in FOLDER/.sending/ and what lacks one "
            "is sent again at the next poll.",
        ),
    ] = 120.0,
    vkey: VkeyOption = None,
    db: DbOption = None,
    pattern: Annotated[
        str,
        typer.Option(
            help="The names of the exports to read, a shell pattern matched in any case; "
            "anything else in FOLDER is left alone.",
        ),
    ] = EXPORTS,
) -> None:
    """Send the events of each CTF or census return that appears in FOLDER, then move it
    to FOLDER/done/ once the log has signed a receipt for every one of them, the receipts
    beside it in done/NAME.receipts.jsonl (or to FOLDER/rejected/ with a .why beside it).
    Each is taken into FOLDER/.sending/ before it is read, its receipts kept there as they
    come; stopped and started again, the watcher sends only the events that hold none.
    Only names matching --pattern (*.xml) are read; anything so named that is not a
    regular file (a link, a folder, a FIFO) is rejected unopened. It says at start what it
    watches and where files go, then one line per file. Ctrl-C stops after the file being
    sent. With --once, exits 1 when a file was left
    waiting (its events lacking a receipt, or the broker not answering)."""
    if not folder.is_dir():
        fail(f"{shown_text(folder)}: not a folder")
    pack = policy_or_fail(policy)
    schools = _gias(gias)
    acked = "files each file once the broker took its events, keeping no receipts"
    log = None if wait is Wait.acked else log_verifier_or_fail(vkey, db, acked)
    console = Console(highlight=False)

    def told(note: str) -> None:
        console.print(f"note: {shown_text(note)}", markup=False, soft_wrap=True)

    config = broker_config(broker)
    try:
        with MisProducer(config) as producer:
            if log is not None:  # the receipts topic is there, or a clear exit now
                producer.send_recorded([], log, timeout)
            convert = partial(stream_events, policy=pack, gias=schools)
            send = _sender(producer, log, timeout, told)
            watcher = FolderWatcher(folder, convert, send, settle, told, log is not None, pattern)
            console.print(banner(watcher, config.bootstrap, once), markup=False, soft_wrap=True)
            waiting = _watch(watcher, console, once)
    except (DeliveryError, KafkaUnavailable) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{shown_text(folder)}: {exc.strerror or exc}")
    if once and waiting:
        raise typer.Exit(1)


def _watch(watcher: FolderWatcher, console: Console, once: bool) -> bool:
    """Poll until Ctrl-C (checked between files: the one being sent keeps what it got);
    with ``once``, one poll. Whether the last poll left a file waiting."""
    stop = Stop()
    while True:
        waiting = False
        for path in watcher.ready():
            if stop.event.is_set():
                return waiting
            if outcome := watcher.handle(path):
                console.print(outcome_line(outcome), markup=False, soft_wrap=True)
                waiting |= outcome.status == "waiting"
        if once or stop.wait(1.0):
            return waiting


def _sender(
    producer: MisProducer, log: Verifier | None, timeout: float, told: Callable[[str], None]
) -> Send:
    """How the watcher sends a file: waiting for the log's receipts (kept in the file it
    names) given the log's key, else for the broker's acknowledgements alone."""

    def send(records: list[bytes], kept: Path | None) -> Mapping[int, str]:
        if log is None or kept is None:
            producer.send_all(records)
            return {}
        outgoing = [Outgoing(raw, read_event(raw).key) for raw in records]
        keeping = deliver_keeping(
            outgoing,
            kept,
            log,
            lambda todo, on_receipt: producer.send_recorded(
                todo, log, timeout, on_receipt=on_receipt
            ),
        )
        for problem in keeping.problems:
            again = "; its event is sent again" if problem.startswith("line ") else ""
            told(f"{kept.name}: {problem}{again}")
        return keeping.lacking

    return send


def banner(watcher: FolderWatcher, broker: str, once: bool) -> str:
    """What the watcher says as it starts: the folder, what it reads there and what it
    leaves, where each file's events go, and where the file goes after."""
    folder = shown_text(watcher.folder)
    done, rejected = shown_text(watcher.folder / DONE), shown_text(watcher.folder / REJECTED)
    settled = f"once unchanged for {watcher.settle:g} s" if watcher.settle else "at once"
    until = (
        f"once the log's receipt of each of its events is kept beside it ({done}/NAME{RECEIPTS})"
        if watcher.receipts
        else "once the broker took each of its events (no receipts kept)"
    )
    stop = "it reads what is there now, then stops" if once else "Ctrl-C stops it"
    return (
        f"watching {folder}/ for {shown_text(watcher.pattern)} (Common Transfer Files and "
        f"census returns), each read {settled}; anything else there is left alone\n"
        f"each file's events go to {shown_text(broker)}, then the file to {done}/ {until}; "
        f"a file that cannot be read goes to {rejected}/ beside a .why saying why; {stop}"
    )


def outcome_line(outcome: Outcome) -> str:
    """What became of a file, as a line for the operator: its name and reason (the reason
    without the file's path before it: the line names the file), with control characters
    escaped, as the MIS or whoever writes into the folder chose both."""
    name = shown_text(outcome.file)
    if outcome.status == "done":
        return f"done: {name}: {counted(outcome.events, 'event')}"
    why = re.sub(rf"^(?:\S*/)?{re.escape(name)}: ", "", shown_text(outcome.why))
    return f"{outcome.status}: {name}: {why}"
