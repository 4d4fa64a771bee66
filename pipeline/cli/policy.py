"""``sharing-audit policy`` and ``schemas``: the packs a school edits, and the event
contract as JSON Schema."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from pipeline.cli.exits import EXIT_UNREADABLE, fail, policy_or_fail, schools_or_fail
from pipeline.cli.options import (
    DbOption,
    PolicyOption,
    SchoolOption,
    SchoolsOption,
    cli_reader,
    open_ledger,
    period_report,
    reading,
    school_scope,
)
from pipeline.cli.terminal import print_pack_differences, print_policy, print_what_if
from pipeline.packs import load_pack, pack_text
from pipeline.policy.diff import pack_differences
from pipeline.policy.pack import PackError
from pipeline.policy.whatif import candidate_packs
from pipeline.reports.formats import pack_differences_csv, what_if_csv, what_if_html
from pipeline.reports.whatif import adopt, audited_what_if
from schemas.export import write_schemas

policy_app = typer.Typer(
    help="Show, validate, compare and adopt policy packs; replay history under a candidate.",
    no_args_is_help=True,
)
schemas_app = typer.Typer(help="The event contract as JSON Schema.", no_args_is_help=True)


@policy_app.command("show")
def policy_show(
    pack: Annotated[str | None, typer.Argument(help="Shipped pack name or YAML file.")] = None,
) -> None:
    """Print a policy pack readably: categories, recipients, retention, deadlines."""
    print_policy(Console(), policy_or_fail(pack))


@policy_app.command("validate")
def policy_validate(
    file: Annotated[str, typer.Argument(help="A policy pack YAML file.")],
) -> None:
    """Check a school's edited pack; exit 1 listing every problem with its place (2 when
    the file cannot be read as YAML at all)."""
    try:
        policy = load_pack(file)
    except PackError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        raise typer.Exit(EXIT_UNREADABLE if exc.unreadable else 1) from None
    print(f"{file}: valid pack {policy.name!r}, version {policy.version}")


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="Where to write one JSON Schema per type.")],
) -> None:
    """Write the contract's JSON Schema files: one per event type, and the alert."""
    try:
        written = write_schemas(directory)
    except OSError as exc:
        fail(f"cannot write to {directory}: {exc.strerror or exc}")
    for path in written:
        print(path)


class WhatIfFormat(StrEnum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"
    html = "html"


@policy_app.command("what-if")
def policy_what_if(
    candidate: Annotated[str, typer.Argument(help="The candidate pack: a YAML file.")],
    since: Annotated[str | None, typer.Option(help="From this date or time (inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date or time.")] = None,
    db: DbOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
    school: SchoolOption = None,
    output: Annotated[
        WhatIfFormat | None,
        typer.Option("--format", "-f", help="table (the default on a terminal), csv, jsonl, html."),
    ] = None,
) -> None:
    """Replay the period's sharing events under a candidate pack, and list every event
    whose decision would change from its current one (pupils by pseudonym). Appends
    nothing to the ledger but the record of this read."""
    register, in_force, start, end, ledger = period_report(
        db, policy, schools, school, since, until, adopted=False
    )
    try:
        text, source = pack_text(candidate)
        packs = candidate_packs(text, source, register)
    except PackError as exc:
        fail(f"candidate pack {exc.source}: " + "; ".join(exc.problems))
    with reading(ledger):
        report = audited_what_if(
            ledger, cli_reader(), packs, source, in_force, start, end, school, register
        )
    assert report is not None  # the operator sees every school
    fmt = output or (WhatIfFormat.table if sys.stdout.isatty() else WhatIfFormat.jsonl)
    if fmt is WhatIfFormat.table:
        print_what_if(Console(highlight=False), report)
    elif fmt is WhatIfFormat.csv:
        sys.stdout.write(what_if_csv(report))
    elif fmt is WhatIfFormat.html:
        sys.stdout.write(what_if_html(report))
    else:
        out = sys.stdout.buffer
        for change in report["changes"]:
            out.write(orjson.dumps(change) + b"\n")
        out.write(orjson.dumps({"summary": _summary_of(report)}) + b"\n")


def _summary_of(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "changes"}


class DiffFormat(StrEnum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"


@policy_app.command("diff")
def policy_diff(
    old: Annotated[str, typer.Argument(help="The pack now: a shipped pack's name or YAML file.")],
    new: Annotated[str, typer.Argument(help="The pack to compare: a shipped pack or YAML file.")],
    output: Annotated[
        DiffFormat | None,
        typer.Option("--format", "-f", help="table (the default on a terminal), csv, jsonl."),
    ] = None,
) -> None:
    """The two packs' rules side by side: categories, recipients, permissions (categories,
    lawful bases, Art 9 conditions, channels), retention and settings, each place added,
    removed or changed. Exits 0 whether or not they differ."""
    packs = []
    for ref in (old, new):
        try:
            packs.append(load_pack(ref))
        except PackError as exc:
            fail(f"policy pack {exc.source}: " + "; ".join(exc.problems))
    differences = pack_differences(*packs)
    fmt = output or (DiffFormat.table if sys.stdout.isatty() else DiffFormat.jsonl)
    if fmt is DiffFormat.table:
        print_pack_differences(Console(highlight=False), packs[0], packs[1], differences)
    elif fmt is DiffFormat.csv:
        sys.stdout.write(pack_differences_csv(differences))
    else:
        for difference in differences:
            sys.stdout.buffer.write(orjson.dumps(difference.as_dict()) + b"\n")


@policy_app.command("adopt")
def policy_adopt(
    candidate: Annotated[str, typer.Argument(help="The pack to adopt: a YAML file.")],
    db: DbOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
    school: Annotated[
        str | None,
        typer.Option(help="Adopt it for this school of the register (its URN); else for all."),
    ] = None,
) -> None:
    """Make a pack the one in force: its what-if over the whole history is shown and
    recorded with the adoption (who, when, the old and new versions) in the ledger, and
    the writer decides by it from its next batch. The pack's text is kept in the entry."""
    register = schools_or_fail(schools)
    if school is not None and register is None:
        fail(
            "--school needs the register of schools (--schools): without one, one pack "
            "decides every school's events"
        )
    school_scope(school, register)
    configured = policy_or_fail(policy)
    try:
        text, source = pack_text(candidate)
    except PackError as exc:
        fail(f"candidate pack {exc.source}: " + "; ".join(exc.problems))
    ledger = open_ledger(db, create=False)
    try:
        with reading(ledger):
            report = adopt(ledger, cli_reader(), text, source, configured, school, register)
    except PackError as exc:
        fail(f"candidate pack {exc.source}: " + "; ".join(exc.problems))
    print_what_if(Console(highlight=False), {**report, "changes": []})
    old, new = report["old"], report["new"]
    print(
        f"adopted {new['name']} {new['version'][:12]} in place of {old['name']} "
        f"{old['version'][:12]}"
        + (f" for school {school}" if school else "")
        + f": entry {report['adopted_seq']}"
    )
