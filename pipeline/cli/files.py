"""``sharing-audit ctf events``, ``census events`` and ``watch``: the files an MIS already
writes (Common Transfer Files, School Census returns) as contract events, on standard
output for ``check`` or ``emit``, or sent from the MIS's export folder as they appear."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from pipeline.cli.exits import fail, policy_or_fail
from pipeline.cli.options import BrokerOption, PolicyOption, broker_config
from pipeline.cli.status import Stop
from pipeline.files.events import FileKind, file_events, stream_events
from pipeline.files.gias import Gias, read_gias
from pipeline.files.safe_xml import FileRefused
from pipeline.files.watch import FolderWatcher, Outcome
from pipeline.shown import shown_text
from pipeline.transport.mis import DeliveryError, MisProducer
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
) -> None:
    """Send the events of each CTF or census return that appears in FOLDER, then move it
    to FOLDER/done/ (or FOLDER/rejected/ with a .why beside it). Each is taken into
    FOLDER/.sending/ before it is read; anything that is not a regular file (a link, a
    folder, a FIFO) is rejected unopened. Ctrl-C stops."""
    if not folder.is_dir():
        fail(f"{shown_text(folder)}: not a folder")
    pack = policy_or_fail(policy)
    schools = _gias(gias)
    console = Console(highlight=False)
    config = broker_config(broker)
    try:
        with MisProducer(config) as producer:
            watcher = FolderWatcher(
                folder,
                partial(stream_events, policy=pack, gias=schools),
                producer.send_all,
                settle,
                lambda note: console.print(
                    f"note: {shown_text(note)}", markup=False, soft_wrap=True
                ),
            )
            stop = Stop()
            while True:
                for outcome in watcher.poll():
                    console.print(_outcome_line(outcome), markup=False, soft_wrap=True)
                if once or stop.wait(1.0):
                    break
    except DeliveryError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{shown_text(folder)}: {exc.strerror or exc}")


def _outcome_line(outcome: Outcome) -> str:
    """What became of a file, as a line for the operator: its name and reason, which the
    MIS or whoever writes into the folder chose, with control characters escaped."""
    detail = f"{outcome.events} events" if outcome.status == "done" else outcome.why
    return shown_text(f"{outcome.status}: {outcome.file}: {detail}")
