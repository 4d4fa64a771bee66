"""``sharing-audit notice``: the privacy notice for pupils and parents, made from the pack
and the register; ``notice publish`` records it as the one in force, and ``notice
check`` compares the notice in force with the sharing the ledger holds."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import orjson
import typer

from pipeline.cli.exits import fail, policy_or_fail, school_or_fail, schools_or_fail
from pipeline.cli.options import (
    DbOption,
    PolicyOption,
    SchoolsOption,
    asked,
    cli_reader,
    in_force,
    open_ledger,
    period_report,
    reading,
    school_scope,
)
from pipeline.ledger.reading.asking import instant
from pipeline.ledger.storage.store import Ledger, now_text
from pipeline.ledger.writing.notices import PublishRefused, publish_notice
from pipeline.plural import counted
from pipeline.policy.notice import Says, notice_markdown, notice_of
from pipeline.policy.schools import Schools, controller_of, policy_of
from pipeline.reports.formats import notice_html
from pipeline.reports.notice_check import audited_notice_check, notice_now
from pipeline.schooltime import SCHOOL_TIME
from pipeline.settings import settings
from pipeline.shown import event_name, shown_text, when

notice_app = typer.Typer(
    help="The privacy notice for pupils and parents, made from the policy pack.",
    invoke_without_command=True,
)

SchoolOption = Annotated[
    str | None,
    typer.Option(help="The school (its URN); needed when the register has several."),
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
]


class NoticeFormat(StrEnum):
    html = "html"
    md = "md"


class CheckFormat(StrEnum):
    text = "text"
    json = "json"


def _one_school(school: str | None, register: Schools | None) -> str | None:
    """The school whose notice is made: ``--school``, or the register's only one; None
    with no register (the deployment's one school, as its settings give it)."""
    school_scope(school, register)
    if school is not None or register is None:
        return school
    if len(register.names) == 1:
        return next(iter(register.names))
    fail(f"give --school: the register of schools has {len(register.names)} schools")


def _says(
    policy: str | None, schools: str | None, school: str | None, ledger: Ledger | None
) -> tuple[Says, str | None]:
    """What the notice says: made from the pack in force (adoptions recorded in
    ``ledger`` applied, where there is one) for the school asked about."""
    register = schools_or_fail(schools)
    urn = _one_school(school, register)
    pack = policy_or_fail(policy)
    if ledger is not None:
        pack, register = in_force(ledger, pack, register)
    pack = policy_of(register, urn, pack)
    return notice_of(pack, controller_of(register, urn, school_or_fail())), urn


def _ledger_if_any(db: str | None) -> Ledger | None:
    """The ledger named (--db) or configured, whose adoptions decide the pack the notice
    is made from; None where none is: the notice is then made from the configured pack."""
    if db is None and "database_url" not in settings().model_fields_set:
        return None
    return open_ledger(db, create=False)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, "utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    print(f"written to {output}", file=sys.stderr)


@notice_app.callback()
def notice(
    ctx: typer.Context,
    school: SchoolOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
    form: Annotated[NoticeFormat, typer.Option("--format", "-f")] = NoticeFormat.html,
    output: OutputOption = None,
    db: DbOption = None,
) -> None:
    """Write the privacy notice for pupils and parents, made from the school's pack and
    its details in the register: who the school is, why it shares, with whom and under
    which law, how long it keeps what, and the family's rights. Printable HTML, or
    Markdown for a web page. With a ledger (--db, SHARING_AUDIT_DATABASE_URL), from the
    pack in force there: the configured one or the one adopted since."""
    if ctx.invoked_subcommand is not None:
        return
    says, _ = _says(policy, schools, school, _ledger_if_any(db))
    today = datetime.now(SCHOOL_TIME).date()
    if form is NoticeFormat.md:
        _write(notice_markdown(says, today), output)
    else:
        _write(notice_html(says, today), output)


@notice_app.command("publish")
def notice_publish(
    school: SchoolOption = None,
    in_force_from: Annotated[
        str | None,
        typer.Option("--from", help="The day (or time) the notice is in force from; else now."),
    ] = None,
    by: Annotated[str | None, typer.Option(help="Who publishes it; else your user name.")] = None,
    db: DbOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
) -> None:
    """Record in the ledger that the notice made now is the one in force (from --from):
    what it says, the pack it was made from, who published it. The notice check compares
    the sharing of each day with the notice in force that day."""
    ledger = open_ledger(db, create=False)
    says, urn = _says(policy, schools, school, ledger)
    start = asked(lambda: instant(in_force_from, "--from")) if in_force_from else now_text()
    try:
        seq = publish_notice(
            ledger, says, by=by or getpass.getuser(), school=urn, in_force_from=start
        )
    except PublishRefused as exc:
        fail(str(exc))
    version = says["pack"]["version"][:16]
    print(f"notice published: entry {seq}, in force from {when(start)}, pack version {version}")


@notice_app.command("check")
def notice_check(
    since: Annotated[str | None, typer.Option(help="From this date or time (inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date or time.")] = None,
    school: Annotated[
        str | None, typer.Option(help="One school's part (its URN); else every school's.")
    ] = None,
    db: DbOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
    form: Annotated[CheckFormat, typer.Option("--format", "-f")] = CheckFormat.text,
) -> None:
    """Compare the notice in force with the sharing of a period: recipients and
    categories shared that the notice did not name, recipients it names that received
    nothing, and whether the pack now would make the notice say something else. Exits 1
    when it finds any of these."""
    register, pack, start, end, ledger = period_report(db, policy, schools, school, since, until)
    current = notice_now(pack, register, school_or_fail())
    with reading(ledger):
        report = audited_notice_check(
            ledger, cli_reader(), current, start, end, school, register is not None
        )
    assert report is not None  # the operator sees every school
    if form is CheckFormat.json:
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(check_text(report))
    totals = report["totals"]
    found = ("unnamed_recipients", "unnamed_purposes", "unnamed_categories", "out_of_date")
    if any(totals[k] for k in found):
        raise typer.Exit(1)


def check_text(report: dict[str, object]) -> str:
    """The notice check as lines for a terminal."""
    lines: list[str] = []
    period = report["period"]
    assert isinstance(period, dict)
    lines.append(f"Notice against practice {period['phrase'] or 'over every event recorded'}")
    for row in report["schools"]:  # type: ignore[attr-defined]
        lines.append("")
        lines.append(f"school {row['school']}" if row["school"] else "the school")
        latest = row["latest"]
        if latest is None:
            lines.append("  no notice published: sharing-audit notice publish records one")
        else:
            lines.append(
                f"  notice in force: entry {latest['seq']}, from {when(latest['in_force_from'])}, "
                f"pack version {latest['pack']['version'][:16]}"
            )
        for change in row["changes"]:
            lines.append(f"  the pack now would change the notice: {shown_text(change)}")
        if row["without_notice"]:
            before = counted(row["without_notice"], "event")
            lines.append(f"  {before} shared before any notice was in force")
        for u in row["unnamed_recipients"]:
            lines.append(
                f"  shared with a recipient the notice does not name: {shown_text(u['recipient'])} "
                f"({counted(u['events'], 'event')}; {', '.join(u['categories'])})"
            )
        for u in row["unnamed_purposes"]:
            lines.append(
                f"  sent {shown_text(u['name'])} for a purpose the notice does not give: "
                f"{event_name(u['event_type'])} ({counted(u['events'], 'event')})"
            )
        for u in row["unnamed_categories"]:
            lines.append(
                f"  sent {shown_text(u['name'])} what the notice does not say: "
                f"{', '.join(u['categories'])} ({counted(u['events'], 'event')})"
            )
        for u in row["unused_recipients"]:
            lines.append(f"  named but sent nothing: {shown_text(u['name'])} ({u['recipient']})")
    return "\n".join(lines)
