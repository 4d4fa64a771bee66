"""``sharing-audit ledger ...`` and ``sharing-audit db ...``: the ledger at the command line."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from pipeline.cli.exits import fail, schools_or_fail
from pipeline.cli.keys import witness_key
from pipeline.cli.options import (
    BrokerOption,
    DbOption,
    SchoolOption,
    SchoolsOption,
    asked,
    cli_reader,
    database_url,
    open_ledger,
    pupil_finder,
    reading,
    school_scope,
)
from pipeline.cli.terminal import WHEN_WIDTH, plain, school_time, short_type
from pipeline.ledger.integrity.checkpoint_check import (
    Outside,
    OutsideCheckpointError,
    is_url,
    kept_checkpoints,
    outside_checkpoint,
    outside_fault,
    read_outside,
)
from pipeline.ledger.integrity.verification import MIN_RANGE, default_jobs, verify, verify_from
from pipeline.ledger.log.checkpoints import LogKeyError, log_signer
from pipeline.ledger.log.merging import Unmerged, unmerged
from pipeline.ledger.log.origin import LogOriginError, log_origin
from pipeline.ledger.log.witnessing import witness_at, witnesses_from
from pipeline.ledger.reading.asking import filters_from
from pipeline.ledger.reading.queries import stats
from pipeline.ledger.reading.reads import export
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.dialects import POSTGRESQL
from pipeline.ledger.storage.errors import LedgerError, NotADatabase
from pipeline.ledger.storage.roles import BadRole, grant
from pipeline.ledger.storage.store import Ledger, shown_url
from pipeline.ledger.writing.keys import legacy_pupils, recorded_fingerprint, settle_key_file
from pipeline.plural import counted
from pipeline.pseudonym import (
    Pseudonymiser,
    PseudonymKeyError,
    load_or_create_key,
    pseudonymiser,
)
from pipeline.reports.formats import entries_csv, entries_jsonl
from pipeline.settings import settings
from pipeline.shown import shown_text
from pipeline.transparency.note import Verifier
from pipeline.transport.backlog import awaiting_receipts, in_words, waited

ledger_app = typer.Typer(help="Query and verify the ledger.", no_args_is_help=True)
db_app = typer.Typer(help="The ledger database's schema.", no_args_is_help=True)


class OutputFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


def key_if_any(ledger: Ledger, db: str | None, other: bool = False) -> Pseudonymiser | None:
    """The ledger's pseudonym key when one is at hand (none is made); a key that is not
    the one the ledger recorded is a clear exit, not a list of false faults (None, with
    ``other``, for a command that can do without it)."""
    try:
        settle_key_file(ledger, settings().pseudonym_key, database_url(db))
        key = load_or_create_key(settings().pseudonym_key, database_url(db), may_create=False)
    except PseudonymKeyError:
        return None
    pseudonyms = pseudonymiser(key)
    recorded = recorded_fingerprint(ledger)
    if recorded is not None and recorded != pseudonyms.fingerprint:
        if other:
            return None
        fail("the pseudonym key is not the one this ledger was written with")
    return pseudonyms


JobsOption = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        min=1,
        help="Processes checking the chain in ranges (default: one per core, at most 8; "
        f"a range is at least {MIN_RANGE:,} entries).",
    ),
]


KeptOption = Annotated[
    str | None,
    typer.Option(
        "--checkpoint",
        metavar="FILE|URL",
        help="A checkpoint of this log kept outside its database: a file (an auditor's), "
        "or a witness's URL, asked for the one it last cosigned. The tree must have its "
        "root at its size.",
    ),
]


FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="FILE|URL",
        help="A checkpoint of this log you verified the ledger against before: check only "
        "what came after it (its entries' chain, the tree they grow from its tree, the "
        "checkpoints signed since), not the whole history again.",
    ),
]


WitnessOption = Annotated[
    str | None,
    typer.Option(
        "--witness",
        metavar="KEY|FILE",
        help="A witness's verifier key, or a file holding it: the checkpoint given "
        "(--checkpoint or --from) must bear its cosignature. A witness's URL listed in "
        "SHARING_AUDIT_WITNESSES is checked against its key there without this.",
    ),
]


@ledger_app.command("verify")
def ledger_verify(
    db: DbOption = None,
    jobs: JobsOption = None,
    checkpoint: KeptOption = None,
    since: FromOption = None,
    witness: WitnessOption = None,
) -> None:
    """Recompute the hash chain and the Merkle tree, and check the facts, payloads and
    (given the pseudonym key) identities beside it, the checkpoints the log signed, and
    (--checkpoint) one kept outside the database; rebuild the pupil index and the users'
    roles, schools, expiry, revocation and tokens from the entries, and compare them with
    their tables; exit 1 naming the first entry (or user) that is wrong, and why. Without a
    checkpoint kept outside, a history its owner rewrote and signed again verifies: it says
    so. With --from, a checkpoint verified before: only what came after it. A witness's
    checkpoint must bear its cosignature when its key is known (--witness, or the witness
    configured at that URL); verify says so when it is not."""
    if since is not None:
        if checkpoint is not None:
            fail("--checkpoint and --from: give one (--from checks only what came after it)")
        _verify_from(db, since, _witness_for(since, witness))
        return
    cosigner = _witness_for(checkpoint, witness)
    ledger = open_ledger(db, create=False)
    pseudonyms = key_if_any(ledger, db)
    log = _log_verifier_if_any(db)
    outside = _outside_checkpoint(checkpoint, log, db, cosigner)
    against = None
    with reading(ledger) as connection:
        result = verify(connection, pseudonyms, log, jobs or default_jobs())
        kept = kept_checkpoints(connection)
        if outside is not None and result.ok:
            against = outside_fault(connection, outside.checkpoint, outside.where, result.head_seq)
    if result.ok and against is None:
        print(
            f"ledger verified: {result.count} entries, head seq {result.head_seq}, "
            f"head hash {result.head_hash}; its Merkle tree agrees with them"
        )
        print(kept.summary(checked_outside=outside is not None))
        if outside is not None:
            size = outside.checkpoint.size
            print(f"agrees with the checkpoint of size {size} kept in {outside.where}")
            print(_cosigned_said(checkpoint, outside, result.head_seq))
        if pseudonyms is None:
            print("identity rows not checked: no pseudonym key (SHARING_AUDIT_PSEUDONYM_KEY)")
        if log is None and (kept.count or outside is not None):
            print("checkpoint signatures not checked: no log key (SHARING_AUDIT_LOG_KEY)")
        return
    if against is not None:
        print(f"ledger verify FAILED: {against}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"ledger verify FAILED at seq {result.fault_seq}: {result.fault}", file=sys.stderr)
    print(f"the {result.count} entries before it are intact", file=sys.stderr)
    raise typer.Exit(1)


def _verify_from(db: str | None, source: str, cosigner: Verifier | None) -> None:
    """``ledger verify --from``: the checkpoint read and its signature checked (when the
    log's key is known), and its cosignature by ``cosigner`` (when given), then only what
    came after it."""
    ledger = open_ledger(db, create=False)
    log = _log_verifier_if_any(db)
    outside = _outside_checkpoint(source, log, db, cosigner)
    assert outside is not None
    checkpoint, where = outside.checkpoint, outside.where
    with reading(ledger) as connection:
        result = verify_from(connection, checkpoint, where, log)
    if not result.ok:
        print(f"ledger verify FAILED at seq {result.fault_seq}: {result.fault}", file=sys.stderr)
        raise typer.Exit(1)
    print(
        f"ledger verified from the checkpoint of size {checkpoint.size} kept in {where}: "
        f"{result.count} entries after it, head seq {result.head_seq}, head hash "
        f"{result.head_hash}; the tree they grow from its tree agrees with them, and "
        "with every checkpoint signed since"
    )
    print(
        f"not read again: the {checkpoint.size} entries it covers (its root still holds), "
        "and the rows beside the chain and the indexes (a whole `ledger verify` checks them)"
    )
    print(_cosigned_said(source, outside, result.head_seq))
    if log is None:
        print("checkpoint signatures not checked: no log key (SHARING_AUDIT_LOG_KEY)")


def _outside_checkpoint(
    source: str | None, log: Verifier | None, db: str | None, cosigner: Verifier | None
) -> Outside | None:
    """The checkpoint kept outside, and where it was read; or a clear exit. It must be of
    this log's origin: the key's name, or without the key the origin its checkpoints carry;
    and cosigned by ``cosigner`` when given."""
    if source is None:
        return None
    try:
        origin = log.name if log else log_origin(database_url(db), settings().log_origin)
        data, where = read_outside(source, origin)
        return outside_checkpoint(data, where, log, origin, cosigner)
    except (OutsideCheckpointError, LogOriginError) as exc:
        fail(str(exc))


def _witness_for(source: str | None, given: str | None) -> Verifier | None:
    """The witness whose cosignature the checkpoint kept outside must bear: the one given
    (--witness), else, for a witness's URL, the witness configured at that address; None
    when neither is known."""
    if given is not None:
        if source is None:
            fail("--witness goes with --checkpoint or --from: the checkpoint it cosigned")
        return witness_key(given, "--witness")
    if source is None or not is_url(source):
        return None
    try:
        configured = witnesses_from(settings().witnesses)
    except ValueError as exc:
        fail(f"SHARING_AUDIT_WITNESSES: {exc}")
    found = witness_at(configured, source)
    return None if found is None else found.verifier


def _cosigned_said(source: str | None, outside: Outside, entries: int) -> str:
    """What verify says of the cosignature of the checkpoint kept outside: whose, and
    when (a look-alike server could serve the witness's older checkpoint again: the
    entries after it are vouched for by no witness here, and verify says how many)."""
    if outside.cosigned_at is not None:
        when = datetime.fromtimestamp(outside.cosigned_at, UTC).isoformat(timespec="seconds")
        said = f"cosigned by the witness {outside.witness} at {when} (its cosignature verified)"
        after = entries - outside.checkpoint.size
        if after > 0:
            said += f"; the {after} entries after it are vouched for by no witness here"
        return said
    if source is not None and is_url(source):
        return (
            "the witness's cosignature not checked: its key is not known here (give --witness "
            "KEY, or list the witness in SHARING_AUDIT_WITNESSES); a server answering at that "
            "address with a checkpoint signed by the log's key alone would pass"
        )
    return "no witness's cosignature asked for (--witness KEY to require one)"


def _log_verifier_if_any(db: str | None) -> Verifier | None:
    config = settings()
    url = database_url(db)
    try:
        return log_signer(config.log_key, log_origin(url, config.log_origin), url, False).verifier
    except LogOriginError as exc:
        fail(str(exc))
    except LogKeyError:
        return None


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
    school: SchoolOption = None,
    schools: SchoolsOption = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
) -> None:
    """List ledger entries, oldest first, filtered (one school's with --school). The query
    is recorded as a read."""
    scope = school_scope(school, schools_or_fail(schools))
    filters = asked(
        lambda: filters_from(
            lambda upn: pupil_finder(db)(upn),
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
        _, found = export(ledger, replace(cli_reader(), schools=scope), filters, output.value)
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
    table = entries_table(rows)
    console = Console()
    console.print(table)
    console.print(counted(table.row_count, "entry", "entries"))


def entries_table(rows: Iterable[dict[str, Any]]) -> Table:
    """Entries as a table that fits 80 columns with no word broken: when each happened in
    school time (words a narrow column wraps between), and what it was (its kind, what
    was shared with whom, or who read what) with the rules it broke under it."""
    table = Table(header_style="bold")
    table.add_column("seq", justify="right")
    table.add_column("when", max_width=WHEN_WIDTH)
    table.add_column("decision")
    table.add_column("entry")
    for row in rows:
        read = row["kind"] == "read"
        rules = [Text(", ".join(row["rules"]), "bold")] if row["rules"] else []
        table.add_row(
            str(row["seq"]),
            school_time(row["recorded_at"] if read else row["occurred_at"]),
            row["decision"] or "",
            Group(_entry_said(row), *rules),
        )
    return table


def _entry_said(row: dict[str, Any]) -> Text:
    """``reevaluation of 11: pupil.referred to la:850``; ``read: search by dana (api)``."""
    said = Text(row["kind"] + (f" of {row['refers_to']}" if row["refers_to"] else ""))
    details = row["details"] or {}
    if row["kind"] == "read":
        action, by, via = (details.get(k) for k in ("action", "by", "via"))
        return said.append(": ").append(plain(f"{action or 'read'} by {by} ({via})"))
    if row["kind"] == EntryKind.KEY_ROTATED:
        return said.append(": ").append(plain(f"by {details.get('by')}"))
    if row["kind"] == "erasure":
        by, rule = details.get("by"), details.get("rule")
        return said.append(": ").append(plain(f"pupil erased by {by} ({rule})"))
    if row["kind"] == EntryKind.NOTICE_PUBLISHED:
        by, school = details.get("by"), details.get("school")
        return said.append(": ").append(plain(f"by {by}" + (f" for {school}" if school else "")))
    if row["event_type"]:
        said.append(": ").append(short_type(row["event_type"]))
    if row["recipient"]:
        said.append(" to ").append(plain(row["recipient"]))
    return said


@ledger_app.command("stats")
def ledger_stats(db: DbOption = None, broker: BrokerOption = None) -> None:
    """Counts by kind, decision and event type, alerts by how their relay went (pending,
    sent, superseded, set aside: one the broker would not take), and the chain head;
    with a broker (--broker, else SHARING_AUDIT_BROKER), the records it accepted that no
    worker has recorded yet, whose senders hold no receipt, and the oldest one's age."""
    ledger = open_ledger(db, create=False)
    pseudonyms = key_if_any(ledger, db, other=True)
    with reading(ledger) as connection:
        figures = stats(connection)
        outside = unmerged(connection)
        legacy = None if pseudonyms is None else legacy_pupils(connection, pseudonyms)
    console = Console()
    console.print(f"entries: {figures['entries']}   pupils: {figures['pupils']}")
    console.print(f"head hash: {figures['head_hash']}")
    console.print(f"recorded from {figures['first_recorded_at']} to {figures['last_recorded_at']}")
    for table in stats_tables(figures):
        console.print(table)
    unknown = (
        "lifecycle facts about pupils the ledger held no identity for, at schools that had "
        f"erased a pupil (they re-decide nothing recorded before): "
        f"{figures['facts_for_unknown_pupils']}"
    )
    console.print(unknown, markup=False, highlight=False, soft_wrap=True)
    said = f"receipted entries in no signed checkpoint: {merge_said(outside)}"
    console.print(said, markup=False, highlight=False, soft_wrap=True)
    awaiting = f"records awaiting a receipt: {awaiting_said(broker)}"
    console.print(awaiting, markup=False, highlight=False, soft_wrap=True)
    if legacy:
        console.print(legacy_said(legacy), markup=False, highlight=False, soft_wrap=True)


def legacy_said(pupils: int) -> str:
    """What to do before erasing pupils whose pseudonyms the current key remakes."""
    said = "1 pupil's pseudonym is" if pupils == 1 else f"{pupils:,} pupils' pseudonyms are"
    return (
        f"{said} remade by the current key: run `sharing-audit ledger rotate-key` before "
        "erasing them"
    )


def stats_tables(figures: dict[str, Any]) -> list[Table]:
    """The ledger's counts by kind, decision, event type and alert, a table each."""
    tables = []
    for title in ("by_kind", "by_decision", "by_event_type", "alerts"):
        table = Table(title=title.replace("_", " "), header_style="bold")
        table.add_column("value")
        table.add_column("entries", justify="right")
        for value, n in sorted(figures[title].items()):
            table.add_row(plain(value), str(n))
        tables.append(table)
    return tables


def merge_said(outside: Unmerged) -> str:
    """How many receipted entries wait for a checkpoint, how long the oldest has, and
    whether that breaks the MMD the log promises (SHARING_AUDIT_MAX_MERGE_DELAY_SECONDS)."""
    if outside.oldest is None:
        return "none"
    delay = settings().merge_delay
    now = datetime.now(UTC)
    age = waited((now - outside.oldest).total_seconds())
    missed = ": the maximum merge delay is MISSED" if outside.overdue(now, delay) else ""
    return f"{outside.entries:,}, the oldest for {age}{missed} (the log promises {delay:g} s)"


def awaiting_said(broker: str | None) -> str:
    """What awaits a receipt at ``broker`` (else the configured one), in words; when
    there is no broker to ask, or it does not answer, that said plainly."""
    bootstrap = broker or settings().broker
    if not bootstrap:
        return "cannot tell without a broker (give --broker HOST:PORT or set SHARING_AUDIT_BROKER)"
    return in_words(awaiting_receipts(settings().kafka(bootstrap)), shown_text(bootstrap))


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
    if ledger.dialect is not POSTGRESQL:
        fail("db grant is for PostgreSQL: a SQLite file is protected by its mode (0600)")
    try:
        with ledger.engine.begin() as connection:
            grant(connection, role)
    except BadRole as exc:
        fail(str(exc))
    except LedgerError as exc:
        fail(f"cannot grant on {shown_url(url)}: {exc}")
    print(f"{shown_url(url)}: {role} may read and append the ledger, and nothing more")


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create the ledger's schema, or bring it to the latest version."""
    url = database_url(db)
    try:
        ledger = Ledger.open(url)
        with Progress(transient=True) as bar:
            task = bar.add_task("building the Merkle tree over the entries", total=None)
            revision = schema.upgrade(
                ledger.engine, lambda done, total: bar.update(task, completed=done, total=total)
            )
    except NotADatabase:
        fail(f"not a database URL: {shown_url(url)}")
    except LedgerError as exc:
        fail(f"cannot open {shown_url(url)}: {exc}")
    print(f"{shown_url(url)}: schema at revision {revision}")
