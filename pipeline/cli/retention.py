"""``sharing-audit retention due``: what each school must now destroy.

Sharing is checked against retention as it happens; a record nobody shares again never
is. This lists, for a day, the pupils' records past their pack's period and not recorded
destroyed (:mod:`pipeline.policy.retention`). The list names pupils by UPN, for the school
to find them in its MIS, so each listing is recorded in the ledger as a read.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.exits import fail, policy_or_fail, schools_or_fail
from pipeline.cli.options import (
    DbOption,
    PolicyOption,
    SchoolOption,
    SchoolsOption,
    cli_reader,
    in_force,
    open_ledger,
    reading,
    school_scope,
)
from pipeline.cli.terminal import plain
from pipeline.ledger.privacy.retention import DUE_COLUMNS, DueList, audited_due, due_rows
from pipeline.plural import counted
from pipeline.policy.schools import policy_of
from pipeline.reports.formats import csv_chunks
from pipeline.schooltime import school_day, shown_day
from pipeline.shown import category_name, counted_from_name

retention_app = typer.Typer(
    help="Retention: the records each school must now destroy.", no_args_is_help=True
)


class DueFormat(StrEnum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"


def as_of_day(text: str | None) -> date:
    """``--as-of`` as a day (today in school time without one), or a clear exit."""
    if text is None:
        return school_day(datetime.now(UTC))
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"--as-of {text!r}: not a date; give one as YYYY-MM-DD")


@retention_app.command("due")
def retention_due(
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="The day to ask about, YYYY-MM-DD (default: today)."),
    ] = None,
    school: SchoolOption = None,
    output: Annotated[DueFormat, typer.Option("--format", "-f")] = DueFormat.table,
    db: DbOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
) -> None:
    """Pupils' records past their retention period and not recorded destroyed (each
    school's by its own pack). Record each destruction (a record.destroyed event) to take
    it off the list. Each listing is recorded in the ledger as a read, with your name."""
    day = as_of_day(as_of)
    register = schools_or_fail(schools)
    scope = school_scope(school, register)
    pack = policy_or_fail(policy)
    ledger = open_ledger(db, create=False)
    pack, register = in_force(ledger, pack, register)
    packs = [pack, *(register.policies.values() if register else ())]
    reader = replace(cli_reader(), schools=scope)
    with reading(ledger):
        due, read_seq = audited_due(
            ledger, reader, lambda urn: policy_of(register, urn, pack), packs, day
        )
    recorded = f"listed for {cli_reader().name}: recorded in the ledger as entry {read_seq}"
    if output is DueFormat.table:
        _table(due)
        print(recorded)
        return
    rows = due_rows(due)
    if output is DueFormat.csv:
        sys.stdout.writelines(csv_chunks(DUE_COLUMNS, rows))
    else:
        for row in rows:
            sys.stdout.write(orjson.dumps(dict(zip(DUE_COLUMNS, row, strict=True))).decode())
            sys.stdout.write("\n")
    print(recorded, file=sys.stderr)


def _table(due: DueList) -> None:
    console = Console(highlight=False)
    if not due.items:
        console.print(f"nothing due on {shown_day(due.as_of)}")
        return
    table = Table(header_style="bold", show_edge=False)
    for name in ("school", "UPN", "record", "kept until", "period"):
        table.add_column(name)
    for item in due.items:
        table.add_row(
            item.school,
            due.upns.get(item.pupil, "-"),
            plain(category_name(item.category)),
            shown_day(item.kept_until),
            f"{item.period} {counted_from_name(item.counted_from)}",
        )
    console.print(table)
    pupils = counted(len(due.pupil_keys), "pupil")
    console.print(f"{counted(len(due.items), 'record')} of {pupils} due on {shown_day(due.as_of)}")
