"""``sharing-audit ledger ...`` and ``sharing-audit db ...``: the ledger at the command line."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from pipeline.cli.exits import fail
from pipeline.cli.terminal import plain, short_type
from pipeline.ledger import schema
from pipeline.ledger.asking import BadFilter, filters_from
from pipeline.ledger.keys import KeyRefused, ledger_key, recorded_fingerprint
from pipeline.ledger.queries import stats, verify
from pipeline.ledger.reads import Requester, export
from pipeline.ledger.roles import BadRole, grant
from pipeline.ledger.store import Ledger
from pipeline.pseudonym import (
    Pseudonymiser,
    PseudonymKeyError,
    load_or_create_key,
    pseudonymiser,
)
from pipeline.reports.formats import entries_csv, entries_jsonl
from pipeline.settings import settings

T = TypeVar("T")
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


def pseudonym_key_for(db: str | None, wait_for_database: bool = False) -> bytes:
    """The pseudonym key for the ledger at ``db``, checked against the key the ledger was
    written with (see :mod:`pipeline.ledger.keys`), or a clear exit.

    ``wait_for_database``, for a worker, which waits out a database that is down: the key
    is then taken as configured, and checked by the writer before its first write.
    """
    url = database_url(db)
    try:
        return ledger_key(Ledger.open(url), settings().pseudonym_key, url)
    except (PseudonymKeyError, KeyRefused) as exc:
        fail(str(exc))
    except OperationalError as exc:
        if not wait_for_database:
            fail(f"cannot open the ledger at {shown(url)}: {_first_line(exc)}")
    try:
        return load_or_create_key(settings().pseudonym_key, url, may_create=False)
    except PseudonymKeyError as exc:
        fail(str(exc))


def pseudonym_for(db: str | None) -> Pseudonymiser:
    return pseudonymiser(pseudonym_key_for(db))


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


def cli_reader() -> Requester:
    """Whoever runs a read at the command line: the operating-system user, who has the
    database itself in hand."""
    return Requester(getpass.getuser(), "database", "cli")


def asked(make: Callable[[], T]) -> T:
    """``make()``, or a clear exit naming the filter it could not use."""
    try:
        return make()
    except BadFilter as exc:
        fail(str(exc))


def _key_if_any(ledger: Ledger, db: str | None) -> Pseudonymiser | None:
    """The ledger's pseudonym key when one is at hand (none is made); a key that is not
    the one the ledger recorded is a clear exit, not a list of false faults."""
    try:
        key = load_or_create_key(settings().pseudonym_key, database_url(db), may_create=False)
    except PseudonymKeyError:
        return None
    pseudonyms = pseudonymiser(key)
    recorded = recorded_fingerprint(ledger)
    if recorded is not None and recorded != pseudonyms.fingerprint:
        fail("the pseudonym key is not the one this ledger was written with")
    return pseudonyms


@ledger_app.command("verify")
def ledger_verify(db: DbOption = None) -> None:
    """Recompute the hash chain and check the facts, payloads and (given the pseudonym
    key) identities beside it; exit 1 naming the first entry that is wrong, and why."""
    ledger = open_ledger(db, create=False)
    pseudonyms = _key_if_any(ledger, db)
    with reading(ledger) as connection:
        result = verify(connection, pseudonyms)
    if result.ok:
        print(
            f"ledger verified: {result.count} entries, head seq {result.head_seq}, "
            f"head hash {result.head_hash}"
        )
        if pseudonyms is None:
            print("identity rows not checked: no pseudonym key (SHARING_AUDIT_PSEUDONYM_KEY)")
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
    category: Annotated[str | None, typer.Option(help="A data category, e.g. medical")] = None,
    kind: Annotated[
        str | None, typer.Option(help="decision, reevaluation, incident_action or read")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this date or time (inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date or time.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many entries.")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
) -> None:
    """List ledger entries, oldest first, filtered. The query is recorded as a read."""
    filters = asked(
        lambda: filters_from(
            lambda upn: pseudonym_for(db)(upn),
            upn=pupil,
            recipient=recipient,
            event_type_=event_type,
            decision=decision,
            rule=rule,
            category=category,
            kind=kind,
            since=since,
            until=until,
            names={
                "upn": "--pupil",
                "event_type": "--type",
                "decision": "--decision",
                "kind": "--kind",
                "since": "--since",
                "until": "--until",
            },
        )
    )
    filters = replace(filters, limit=limit)
    ledger = open_ledger(db, create=False)
    with reading(ledger):
        _, found = export(ledger, cli_reader(), filters, output.value)
        _print_entries(found, output)


def _print_entries(rows: Iterator[dict[str, Any]], output: OutputFormat) -> None:
    if output is OutputFormat.jsonl:
        for lines in entries_jsonl(rows):
            sys.stdout.buffer.write(lines)
        return
    if output is OutputFormat.csv:
        for chunk in entries_csv(rows):
            sys.stdout.write(chunk)
        return
    table = Table(header_style="bold")
    for column in ("seq", "kind", "occurred", "type", "recipient", "decision", "rules"):
        table.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        count += 1
        kind = row["kind"] + (f" of {row['refers_to']}" if row["refers_to"] else "")
        details = row["details"] or {}
        read = row["kind"] == "read"
        table.add_row(
            str(row["seq"]),
            kind,
            (row["recorded_at"] if read else row["occurred_at"] or "")[:19],
            plain(details.get("action", "")) if read else short_type(row["event_type"] or ""),
            plain(f"by {details.get('by')} ({details.get('via')})" if read else row["recipient"]),
            row["decision"] or "",
            ", ".join(row["rules"]),
        )
    console = Console()
    console.print(table)
    console.print(f"{count} entries")


@ledger_app.command("stats")
def ledger_stats(db: DbOption = None) -> None:
    """Counts by kind, decision and event type, alerts by how their relay went (pending,
    sent, superseded, set aside: one the broker would not take), and the chain head."""
    ledger = open_ledger(db, create=False)
    with reading(ledger) as connection:
        figures = stats(connection)
    console = Console()
    console.print(f"entries: {figures['entries']}   pupils: {figures['pupils']}")
    console.print(f"head hash: {figures['head_hash']}")
    console.print(f"recorded from {figures['first_recorded_at']} to {figures['last_recorded_at']}")
    for title in ("by_kind", "by_decision", "by_event_type", "alerts"):
        table = Table(title=title.replace("_", " "), header_style="bold")
        table.add_column("value")
        table.add_column("entries", justify="right")
        for value, n in sorted(figures[title].items()):
            table.add_row(plain(value), str(n))
        console.print(table)


@db_app.command("grant")
def db_grant(
    role: Annotated[str, typer.Argument(help="The role workers and the desk connect as.")],
    db: DbOption = None,
) -> None:
    """PostgreSQL: give ROLE what workers and the desk need and no more (run as the
    schema's owner, after db upgrade): read and append the ledger, update only its
    operational tables; never update, delete, truncate, drop a trigger or alter a table."""
    url = database_url(db)
    ledger = open_ledger(db, create=False)
    if ledger.dialect != "postgresql":
        fail("db grant is for PostgreSQL: a SQLite file is protected by its mode (0600)")
    try:
        with ledger.engine.begin() as connection:
            grant(connection, role)
    except BadRole as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"cannot grant on {shown(url)}: {_first_line(exc)}")
    print(f"{shown(url)}: {role} may read and append the ledger, and nothing more")


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
