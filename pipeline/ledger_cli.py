"""``sharing-audit ledger ...`` and ``sharing-audit db ...``: the ledger at the command line."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from pipeline.console import fail
from pipeline.ledger import schema
from pipeline.ledger.queries import ENTRY_COLUMNS, Filters, entries, stats, verify
from pipeline.ledger.store import Ledger, utc_text
from pipeline.presenting import short_type
from pipeline.pseudonym import PseudonymKeyError, load_or_create_key, pseudonymiser
from pipeline.register import check_upn
from pipeline.settings import settings
from schemas.events import EVENT_TYPES

ledger_app = typer.Typer(help="Query and verify the ledger.", no_args_is_help=True)
db_app = typer.Typer(help="The ledger database's schema.", no_args_is_help=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (else SHARING_AUDIT_DATABASE_URL, else sqlite:///sharing-audit.db).",
    ),
]


def database_url(db: str | None) -> str:
    return db or settings().database_url


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def open_ledger(db: str | None, create: bool = True) -> Ledger:
    """The ledger at ``db``, its schema created if the database is empty (see
    :func:`schema.prepare`)."""
    url = database_url(db)
    try:
        ledger = Ledger.open(url)
        schema.prepare(ledger.engine, create)
    except schema.SchemaNotReady as exc:
        fail(f"{shown(url)} {exc}")
    except ArgumentError:
        fail(f"not a database URL: {shown(url)}")
    except OperationalError as exc:
        fail(f"cannot open the ledger at {shown(url)}: {_first_line(exc)}")
    return ledger


def pseudonym_key_for(db: str | None) -> bytes:
    """The pseudonym key for the ledger at ``db``, or a clear exit."""
    try:
        return load_or_create_key(settings().pseudonym_key, database_url(db))
    except PseudonymKeyError as exc:
        fail(str(exc))


def pseudonym_for(db: str | None) -> Callable[[str], str]:
    try:
        return pseudonymiser(pseudonym_key_for(db))
    except PseudonymKeyError as exc:
        fail(str(exc))


def _first_line(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0]


@contextmanager
def reading(ledger: Ledger) -> Iterator[Any]:
    try:
        with ledger.engine.connect() as connection:
            yield connection
    except OperationalError as exc:
        fail(f"cannot read the ledger: {_first_line(exc)}")


class OutputFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


def _instant(value: str | None, option: str) -> str | None:
    """An RFC 3339 instant or a date (midnight UTC) as the ledger's UTC text."""
    if value is None:
        return None
    try:
        if len(value) == 10:  # a date: its midnight, local time
            return utc_text(datetime.combine(date.fromisoformat(value), time.min).astimezone())
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option} {value!r}: give a date (2026-07-21) or an RFC 3339 time")
    if moment.tzinfo is None:
        fail(f"{option} {value!r}: a time needs a UTC offset, e.g. 2026-07-21T09:00:00Z")
    return utc_text(moment)


def _event_type(value: str | None) -> str | None:
    if value is None or value in EVENT_TYPES:
        return value
    matches = [t for t in EVENT_TYPES if value in t.split(".")]
    if len(matches) != 1:
        fail(f"--type {value!r}: give one of {', '.join(EVENT_TYPES)} or a word of one")
    return matches[0]


@ledger_app.command("verify")
def ledger_verify(db: DbOption = None) -> None:
    """Recompute the hash chain; exit 1 naming the first entry that is wrong, and why."""
    ledger = open_ledger(db, create=False)
    with reading(ledger) as connection:
        result = verify(connection)
    if result.ok:
        print(f"ledger verified: {result.count} entries, head seq {result.head_seq}, "
              f"head hash {result.head_hash}")  # fmt: skip
        return
    print(f"ledger verify FAILED at seq {result.fault_seq}: {result.fault}", file=sys.stderr)
    print(f"the {result.count} entries before it are intact", file=sys.stderr)
    raise typer.Exit(1)


@ledger_app.command("query")
def ledger_query(
    db: DbOption = None,
    pupil: Annotated[str | None, typer.Option(help="A pupil's UPN (matched by pseudonym).")] = None,
    recipient: Annotated[str | None, typer.Option(help="e.g. dfe, school:116512")] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", help="Event type, or a word of it: transferred.")
    ] = None,
    decision: Annotated[str | None, typer.Option(help="allowed, review, breach, rejected")] = None,
    rule: Annotated[str | None, typer.Option(help="A rule id, e.g. consent.missing")] = None,
    since: Annotated[str | None, typer.Option(help="From this date or time (inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date or time.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many entries.")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
) -> None:
    """List ledger entries, oldest first, filtered."""
    pupil_key = None
    if pupil is not None:
        if check_upn(pupil)[0] is None:
            fail(f"--pupil: not a valid UPN ({check_upn(pupil)[1]})")
        pupil_key = pseudonym_for(db)(pupil)
    if decision is not None and decision not in ("allowed", "review", "breach", "rejected"):
        fail(f"--decision {decision!r}: one of allowed, review, breach, rejected")
    filters = Filters(
        pupil_key=pupil_key,
        recipient=recipient,
        event_type=_event_type(event_type),
        decision=decision,
        rule=rule,
        since=_instant(since, "--since"),
        until=_instant(until, "--until"),
        limit=limit,
    )
    ledger = open_ledger(db, create=False)
    with reading(ledger) as connection:
        _print_entries(entries(connection, filters), output)


def _print_entries(rows: Iterator[dict[str, Any]], output: OutputFormat) -> None:
    if output is OutputFormat.jsonl:
        for row in rows:
            sys.stdout.buffer.write(orjson.dumps(row) + b"\n")
        return
    if output is OutputFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(ENTRY_COLUMNS)
        for row in rows:
            writer.writerow(
                orjson.dumps(row[c]).decode() if isinstance(row[c], list | dict) else row[c]
                for c in ENTRY_COLUMNS
            )
        return
    table = Table(header_style="bold")
    for column in ("seq", "kind", "occurred", "type", "recipient", "decision", "rules"):
        table.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        count += 1
        kind = row["kind"] + (f" of {row['refers_to']}" if row["refers_to"] else "")
        table.add_row(
            str(row["seq"]),
            kind,
            (row["occurred_at"] or "")[:19],
            short_type(row["event_type"]) if row["event_type"] else "",
            row["recipient"] or "",
            row["decision"] or "",
            ", ".join(row["rules"]),
        )
    console = Console()
    console.print(table)
    console.print(f"{count} entries")


@ledger_app.command("stats")
def ledger_stats(db: DbOption = None) -> None:
    """Counts by kind, decision and event type, and the chain head."""
    ledger = open_ledger(db, create=False)
    with reading(ledger) as connection:
        figures = stats(connection)
    console = Console()
    console.print(f"entries: {figures['entries']}   pupils: {figures['pupils']}")
    console.print(f"head hash: {figures['head_hash']}")
    console.print(f"recorded from {figures['first_recorded_at']} to {figures['last_recorded_at']}")
    for title in ("by_kind", "by_decision", "by_event_type"):
        table = Table(title=title.replace("_", " "), header_style="bold")
        table.add_column("value")
        table.add_column("entries", justify="right")
        for value, n in sorted(figures[title].items()):
            table.add_row(value, str(n))
        console.print(table)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create the ledger's schema, or bring it to the latest version."""
    url = database_url(db)
    try:
        ledger = Ledger.open(url)
        revision = schema.upgrade(ledger.engine)
    except ArgumentError:
        fail(f"not a database URL: {shown(url)}")
    except OperationalError as exc:
        fail(f"cannot open {shown(url)}: {_first_line(exc)}")
    print(f"{shown(url)}: schema at revision {revision}")
