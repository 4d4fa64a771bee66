"""``sharing-audit report sar|ropa``: the subject-access report and the record of processing.

The command-line twins of ``/pupils/sar`` and ``/reports/ropa``: the same reports, in the
same formats, each recorded in the ledger as a read by the operating-system user.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import orjson
import typer

from pipeline.cli.exits import fail, policy_or_fail, school_or_fail, schools_or_fail
from pipeline.cli.options import (
    DbOption,
    PolicyOption,
    SchoolOption,
    SchoolsOption,
    asked,
    cli_reader,
    in_force,
    open_ledger,
    period_report,
    pupil_finder,
    reading,
    school_scope,
)
from pipeline.ledger.reading.asking import pupil_key
from pipeline.reports.erasure import erasure_statement
from pipeline.reports.formats import ReportFormat, rendered
from pipeline.reports.notice_check import notice_now, ropa_part
from pipeline.reports.ropa import audited_ropa
from pipeline.reports.sar import audited_sar
from pipeline.settings import settings

report_app = typer.Typer(
    help="Subject-access reports and the record of processing, from the ledger.",
    no_args_is_help=True,
)

PolicyOption = PolicyOption
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
]


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by its owner alone (0600): a report names
    pupils and, for subject access, their UPN and date of birth."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file that was there keeps its mode through O_CREAT
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _write(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        return
    try:
        write_private(output, data)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    print(f"written to {output}", file=sys.stderr)


@report_app.command("sar")
def report_sar(
    pupil: Annotated[str | None, typer.Option(help="The pupil's UPN.")] = None,
    erasure: Annotated[
        int | None,
        typer.Option(help="Instead: print again the statement of erasure entry N, for the family."),
    ] = None,
    db: DbOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
    school: SchoolOption = None,
    output: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.html,
    to: OutputOption = None,
) -> None:
    """Everything the ledger holds about one pupil (UK GDPR Art 15), for their parent:
    of one school (--school) or every school's part. An erased pupil's UPN finds nothing:
    the statement given when they were erased is printed again by its reference
    (--erasure N)."""
    if (pupil is None) == (erasure is None):
        fail("give the pupil's UPN (--pupil) or an erasure's reference (--erasure), not both")
    if erasure is not None:
        _erasure(erasure, db, schools, school, output, to)
        return
    assert pupil is not None
    pack = policy_or_fail(policy)
    named = school_or_fail()
    key = asked(lambda: pupil_key(pupil, lambda upn: pupil_finder(db)(upn), "--pupil"))
    ledger = open_ledger(db, create=False)
    pack, register = in_force(ledger, pack, schools_or_fail(schools))
    reader = replace(cli_reader(), schools=school_scope(school, register))
    with reading(ledger):
        report = audited_sar(ledger, reader, key, pack, settings().witness_quorum, register, named)
    if report is None:
        fail(f"no entry of school {school} names this pupil")
    _write(rendered(report, "subject-access", output)[0], to)


def _erasure(
    seq: int,
    db: str | None,
    schools: str | None,
    school: str | None,
    output: ReportFormat,
    to: Path | None,
) -> None:
    """The statement of erasure entry ``seq`` (JSON with ``--format json``, else its one
    sentence), or a clear exit when ``seq`` is no erasure of the schools asked about."""
    register = schools_or_fail(schools)
    scope = school_scope(school, register)
    named = school_or_fail()
    ledger = open_ledger(db, create=False)
    with reading(ledger) as connection:
        statement = erasure_statement(connection, seq, scope, register, named)
    if statement is None:
        fail(f"entry {seq} is no erasure" + (f" of school {school}" if school else ""))
    if output is ReportFormat.json:
        _write(orjson.dumps(statement.as_dict(), option=orjson.OPT_INDENT_2) + b"\n", to)
    else:
        _write(statement.text.encode() + b"\n", to)


@report_app.command("ropa")
def report_ropa(
    since: Annotated[str | None, typer.Option(help="From this date or time (inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date or time.")] = None,
    db: DbOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
    school: SchoolOption = None,
    output: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.html,
    to: OutputOption = None,
) -> None:
    """The Article 30 record of processing, counted from the events of a period."""
    register, pack, start, end, ledger = period_report(db, policy, schools, school, since, until)
    with reading(ledger):
        notice = ropa_part(
            notice_now(pack, register, school_or_fail()), start, end, register is not None
        )
        report = audited_ropa(ledger, cli_reader(), pack, start, end, school, register, notice)
    if report is None:  # the operator sees every school: never so
        fail("no report: the school is not one this command may see")
    _write(rendered(report, "record-of-processing", output)[0], to)
    if report["nothing_recorded"]:  # a CSV or JSON file would hold no word of it
        print(report["nothing_recorded"], file=sys.stderr)
