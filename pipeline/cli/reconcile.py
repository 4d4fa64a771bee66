"""``sharing-audit reconcile``: what a school sent, held to what the ledger recorded.

Receipts prove what the log promised; reconcile answers the school's own question the
other way round, from the database: which events it sent (events files, as ``emit``
takes them, or a watch folder's ``done/*.receipts.jsonl``) have no ledger entry, and,
for one school, which decision entries of the same period nothing it sent explains (an
event sent from elsewhere in its name, or files the school did not keep)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from pipeline.cli.exits import fail
from pipeline.cli.held import (
    RECEIPTS_SUFFIX,
    Held,
    Unreadable,
    bounded_lines,
    files_named,
    regular_file,
)
from pipeline.cli.options import DbOption, asked, cli_reader, open_ledger, reading, school_scope
from pipeline.cli.terminal import school_time, short_type
from pipeline.ledger.reading.asking import instant
from pipeline.ledger.reading.reconciling import recorded, scoped, unsent
from pipeline.shown import shown_text
from pipeline.transparency.completeness import held_in_line
from pipeline.transparency.delivery import ReceiptRefused

#: The longest events line read (a census of a large school is a few megabytes).
MAX_EVENT_LINE = 64 << 20


class Format(StrEnum):
    table = "table"
    jsonl = "jsonl"


@dataclass
class Sent:
    """The events the files sent: each id and the first line that sent it."""

    where: dict[str, str] = field(default_factory=dict)
    nameless: int = 0  # lines that name no event (not JSON, no id, too long)

    def add(self, event_id: object, where: str) -> None:
        if isinstance(event_id, str) and event_id:
            self.where.setdefault(event_id, where)
        else:
            self.nameless += 1


def reconcile(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE|DIR...",
            help="Events files (JSON Lines, as emit takes), receipts files (*.receipts.jsonl), "
            "or folders searched for both (a watch folder's done/; links not followed).",
        ),
    ],
    db: DbOption = None,
    school: Annotated[
        str | None,
        typer.Option(help="A school's URN: also list its entries of the period that nothing sent."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="With --school: from this date or time (else the first event sent)."),
    ] = None,
    output: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
) -> None:
    """List events sent with no ledger entry and, with --school, that school's decision
    entries of the period (the events' first to last, or from --since) that nothing in the
    files sent. The lookups are recorded as reads. Exit 1 when anything is missing either
    way."""
    scope = school_scope(school)
    start = asked(lambda: instant(since, "--since")) if since is not None else None
    sent = Sent()
    for path in paths:
        _read_sent(path, sent)
    ledger = open_ledger(db, create=False)
    with reading(ledger):
        found = recorded(ledger, cli_reader(), sent.where.keys())
        rows = [_not_recorded(e, w) for e, w in sent.where.items() if e not in found.seqs]
        first = start or found.first
        if scope is not None and first is not None:
            reader = scoped(cli_reader(), scope[0])
            rows += [
                _not_sent(e)
                for e in unsent(
                    ledger, reader, sent.where, first, found.last if start is None else None
                )
            ]
    _show(rows, output)
    _summarise(sent, len(found.seqs), rows, scope, first if scope else None, output)
    raise typer.Exit(1 if rows else 0)


def _read_sent(path: Path, sent: Sent) -> None:
    if path.is_dir() and not path.is_symlink():
        for found in files_named(path, ".jsonl"):
            if isinstance(found, Held):
                print(
                    f"sharing-audit: {shown_text(found.where)}: {found.unreadable}", file=sys.stderr
                )
            else:
                _read_file(found, sent)
        return
    _read_file(path, sent, named=True)


def _read_file(path: Path, sent: Sent, named: bool = False) -> None:
    """The events ``path`` sent, into ``sent``; a file named on the command line that
    cannot be read ends the command, one found in a folder is reported and skipped."""
    try:
        with regular_file(path) as stream:
            for number, line in bounded_lines(stream, MAX_EVENT_LINE):
                sent.add(_event_id(path, line), f"{path}:{number}")
    except Unreadable as exc:
        if named:
            fail(f"cannot read {shown_text(path)}: {exc}")
        print(f"sharing-audit: {shown_text(path)}: {exc}", file=sys.stderr)


def _event_id(path: Path, line: bytes | None) -> object:
    """The id of the event a line sent: a receipts line's event_id, an event's id."""
    if line is None:
        return None
    if path.name.endswith(RECEIPTS_SUFFIX):
        try:
            return held_in_line(line)[0]
        except ReceiptRefused:
            return None
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return event.get("id") if isinstance(event, dict) else None


def _not_recorded(event_id: str, where: str) -> dict[str, Any]:
    return {"missing_from": "ledger", "event_id": event_id, "where": where}


def _not_sent(entry: Any) -> dict[str, Any]:
    return {
        "missing_from": "files",
        "event_id": entry.event_id,
        "seq": entry.seq,
        "type": entry.event_type,
        "occurred_at": entry.occurred_at,
        "decision": entry.decision,
    }


def _show(rows: list[dict[str, Any]], output: Format) -> None:
    if output is Format.jsonl:
        for row in rows:
            sys.stdout.buffer.write(orjson.dumps(row) + b"\n")
        sys.stdout.flush()
        return
    if not rows:
        return
    Console().print(missing_table(rows))


def missing_table(rows: list[dict[str, Any]]) -> Table:
    """What is missing, as a table that fits 80 columns with no word broken: each event's
    id, and under it the line that sent it, or the entry that recorded it (its type and
    when it happened, in school time)."""
    table = Table(header_style="bold")
    table.add_column("missing from")
    table.add_column("event")
    for row in rows:
        if row["missing_from"] == "ledger":
            said = f"sent by {shown_text(row['where'])}"
        else:
            when = school_time(row.get("occurred_at"))
            said = f"entry {row['seq']}: {short_type(row.get('type'))}, {when}"
        table.add_row(row["missing_from"], Group(Text(shown_text(row["event_id"])), said))
    return table


def _summarise(
    sent: Sent,
    found: int,
    rows: list[dict[str, Any]],
    scope: tuple[str, ...] | None,
    since: str | None,
    output: Format,
) -> None:
    missing = sum(1 for row in rows if row["missing_from"] == "ledger")
    lines = [f"{len(sent.where)} events sent, {found} recorded, {missing} not recorded"]
    if sent.nameless:
        lines.append(f"{sent.nameless} lines name no event (not JSON, no id, or too long)")
    if scope is not None:
        unsent_count = len(rows) - missing
        period = (
            f"from {since}" if since else "(no period: nothing sent was recorded; give --since)"
        )
        lines.append(f"{unsent_count} entries of school {scope[0]} {period} that nothing sent")
    print("; ".join(lines), file=sys.stderr if output is Format.jsonl else sys.stdout)
