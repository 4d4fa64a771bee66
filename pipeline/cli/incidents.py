"""``sharing-audit incidents ...``: the DPO's breach desk at the command line."""

from __future__ import annotations

import getpass
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from pipeline.cli.exits import fail, schools_or_fail
from pipeline.cli.options import (
    DbOption,
    SchoolOption,
    SchoolsOption,
    cli_reader,
    open_ledger,
    reading,
    school_scope,
)
from pipeline.cli.report import write_private
from pipeline.cli.terminal import WHEN_WIDTH, plain
from pipeline.incidents.affected import FAMILIES_COLUMNS, event_day, families_rows
from pipeline.incidents.desk import (
    QueueFilter,
    Revealed,
    UnknownIncident,
    incidents,
    queue,
    reveal_pupils,
    take_action,
)
from pipeline.incidents.lifecycle import (
    Action,
    ActionKind,
    Incident,
    Risk,
    TransitionRefused,
    left_text,
)
from pipeline.plural import counted
from pipeline.reports.formats import csv_chunks
from pipeline.schooltime import shown_day, shown_in_school_time
from pipeline.shown import event_name, rule_name

incidents_app = typer.Typer(
    help="Breach incidents and the 72-hour ICO clock.", no_args_is_help=True
)

ByOption = Annotated[
    str | None, typer.Option("--by", help="Who is acting (default: your login name).")
]


class RiskChoice(StrEnum):
    no_risk = "no_risk"
    risk = "risk"
    high_risk = "high_risk"


@incidents_app.command("list")
def incidents_list(
    db: DbOption = None,
    show_all: Annotated[bool, typer.Option("--all", help="Include closed incidents.")] = False,
    school: SchoolOption = None,
    schools: SchoolsOption = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=1, max=100_000, help="How many to list (least time left first)."
        ),
    ] = 100,
    page: Annotated[
        int, typer.Option("--page", min=1, max=1_000_000, help="Which page of --limit.")
    ] = 1,
) -> None:
    """The queue: least time left on the ICO clock first, overdue at the top (one school's
    with --school), --limit at a time."""
    scope = school_scope(school, schools_or_fail(schools))
    ledger = open_ledger(db, create=False)
    now = datetime.now(UTC)
    offset = (page - 1) * limit
    with reading(ledger) as connection:
        asked = QueueFilter(with_closed=show_all)
        found = queue(connection, scope, asked, now, limit, offset, with_alerts=False)
    console = Console(highlight=False)
    if found.listed:
        console.print(queue_table(found.listed, found.events, now))
    what = "incident" if show_all else "open incident"
    if found.total == 0:
        console.print("no incidents" + ("" if show_all else " open"))
    elif not found.listed:
        fail(f"page {page} is past the end: {counted(found.total, what)}, {limit} a page")
    if found.total > len(found.listed) or found.overdue:
        shown = f"{offset + 1}-{offset + len(found.listed)} of " if found.listed else ""
        late = f"; {found.overdue} past the ICO deadline" if found.overdue else ""
        more = f" (--page {page + 1} for the next)" if offset + limit < found.total else ""
        console.print(f"{shown}{counted(found.total, what)}{late}{more}")


def queue_table(listed: list[tuple[int, Incident]], events: dict[int, int], now: datetime) -> Table:
    """The queue as a table that fits 80 columns with no word broken: each incident's
    severity over its status, its cause (the rule, to whom, how many events) in one cell
    of short lines, and its ICO deadline in school time with the time left under it. The
    columns but the cause are no wider than their longest word needs, and the table has
    no outer edge, so that the cause, whose recipient is one long word, is never cut."""
    table = Table(header_style="bold", show_edge=False)
    table.add_column("id", justify="right")
    table.add_column("severity, status", max_width=len("acknowledged"))
    table.add_column("cause")
    table.add_column("ICO deadline", max_width=WHEN_WIDTH)
    for incident_id, incident in listed:
        about = counted(events[incident_id], "event") if events[incident_id] else ""
        table.add_row(
            str(incident_id),
            Group(Text(incident.severity.value, "bold"), incident.status.value.replace("_", " ")),
            Group(
                plain(rule_name(incident.cause.rule)),
                plain(f"to {incident.cause.recipient}"),
                about,
            ),
            _clock(incident, now),
        )
    return table


def _clock(incident: Incident, now: datetime) -> RenderableType:
    """The ICO deadline in school time and, under it, the time left or how long overdue."""
    deadline, left = incident.deadline, incident.time_left(now)
    if deadline is None or left is None:
        return "-"
    overdue = left < timedelta(0)
    said = Text(left_text(left) + ("" if overdue else " left"), "bold red" if overdue else "bold")
    return Group(shown_in_school_time(deadline), said)


@incidents_app.command("show")
def incidents_show(incident_id: int, db: DbOption = None) -> None:
    """One incident: its cause, clock, alerts, history and what may be done next."""
    ledger = open_ledger(db, create=False)
    with reading(ledger) as connection:
        incident = incidents(connection, ids=(incident_id,)).get(incident_id)
    if incident is None:
        fail(f"no incident {incident_id}")
    now = datetime.now(UTC)
    console = Console(highlight=False)
    kind = "breach" if incident.breach else "review"
    title = f"{incident.severity.value} {kind}, {incident.status.value}"
    console.print(Text.assemble((f"incident {incident_id}", "bold"), f": {title}"))
    cause = incident.cause
    console.print(
        Text.assemble(
            "cause: ",
            plain(cause.rule),
            " to ",
            plain(cause.recipient),
            f" on {cause.day}",
            f", school {cause.school}" if cause.school else "",
        )
    )
    console.print(f"detected: {shown_in_school_time(incident.detected_at)}")
    if incident.deadline is not None:
        left = left_text(incident.time_left(now)) or "-"
        console.print(f"ICO deadline: {shown_in_school_time(incident.deadline)} ({left})")
    if incident.risk is not None:
        console.print(f"risk: {incident.risk.value}")
    entries = ", ".join(str(seq) for seq in incident.entries)
    console.print(f"ledger entries: {entries} (sharing-audit ledger query for each)")
    for action in incident.history:
        detail = "; ".join(
            f"{name}: {value}"
            for name, value in (
                ("risk", action.risk),
                ("reasons", action.reasons),
                ("ICO reference", action.ico_reference),
            )
            if value
        )
        when = shown_in_school_time(action.at)
        console.print(
            plain(
                f"  {when}  {action.kind.value} by {action.by}" + (f" ({detail})" if detail else "")
            )
        )
    allowed = ", ".join(k.value for k in incident.allowed()) or "nothing"
    console.print(f"next: {allowed}")


def _act(db: str | None, incident_id: int, action: Action) -> None:
    ledger = open_ledger(db, create=False)
    try:
        seq, _ = take_action(ledger, incident_id, action)
    except UnknownIncident:
        fail(f"no incident {incident_id}")
    except TransitionRefused as refused:
        fail(f"cannot {action.kind.value} incident {incident_id}: {refused}", 1)
    print(f"incident {incident_id}: {action.kind.value} recorded as ledger entry {seq}")


def _who(by: str | None) -> str:
    return by or getpass.getuser()


def _now() -> datetime:
    return datetime.now(UTC)


@incidents_app.command("ack")
def incidents_ack(incident_id: int, db: DbOption = None, by: ByOption = None) -> None:
    """Acknowledge an incident: someone is on it."""
    _act(db, incident_id, Action(ActionKind.ACKNOWLEDGE, _who(by), _now()))


@incidents_app.command("assess")
def incidents_assess(
    incident_id: int,
    risk: Annotated[RiskChoice, typer.Option(help="The risk to the pupils.")],
    reasons: Annotated[str, typer.Option(help="Why: what was shared, with whom, the harm.")],
    db: DbOption = None,
    by: ByOption = None,
) -> None:
    """Record the risk assessment (Art 33(1): is a risk to the pupils likely?)."""
    action = Action(ActionKind.ASSESS, _who(by), _now(), risk=Risk(risk.value), reasons=reasons)
    _act(db, incident_id, action)


@incidents_app.command("report")
def incidents_report(
    incident_id: int,
    ico_reference: Annotated[str, typer.Option(help="The ICO's case reference.")],
    reported_at: Annotated[
        datetime | None, typer.Option(help="When it was reported (default: now).")
    ] = None,
    db: DbOption = None,
    by: ByOption = None,
) -> None:
    """Record the report to the ICO (Art 33)."""
    when = reported_at or _now()
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    action = Action(
        ActionKind.REPORT, _who(by), _now(), ico_reference=ico_reference, reported_at=when
    )
    _act(db, incident_id, action)


@incidents_app.command("notify")
def incidents_notify(incident_id: int, db: DbOption = None, by: ByOption = None) -> None:
    """Record that the pupils' families were told of a high-risk breach (Art 34)."""
    _act(db, incident_id, Action(ActionKind.NOTIFY_SUBJECTS, _who(by), _now()))


@incidents_app.command("close")
def incidents_close(
    incident_id: int,
    reason: Annotated[str, typer.Option(help="Why it can be closed.")],
    db: DbOption = None,
    by: ByOption = None,
) -> None:
    """Close an incident, with the reason."""
    _act(db, incident_id, Action(ActionKind.CLOSE, _who(by), _now(), reasons=reason))


class PupilsFormat(StrEnum):
    table = "table"
    csv = "csv"


@incidents_app.command("pupils")
def incidents_pupils(
    incident_id: int,
    db: DbOption = None,
    school: SchoolOption = None,
    schools: SchoolsOption = None,
    output: Annotated[
        PupilsFormat,
        typer.Option("--format", "-f", help="A table, or the families to notify as CSV."),
    ] = PupilsFormat.table,
    csv_file: Annotated[
        Path | None,
        typer.Option(
            "--csv", help="Write the families to notify (CSV) to this file, readable by you alone."
        ),
    ] = None,
    by: ByOption = None,
) -> None:
    """Reveal who an incident concerned (UPN, date of birth, school), to tell their
    families (Art 34). Each reveal is recorded in the ledger as a read, with your name."""
    scope = school_scope(school, schools_or_fail(schools))
    ledger = open_ledger(db, create=False)
    reader = replace(cli_reader(), name=_who(by), schools=scope)
    as_csv = csv_file is not None or output is PupilsFormat.csv
    with reading(ledger):
        revealed = reveal_pupils(ledger, reader, incident_id, "csv" if as_csv else "table")
    if revealed is None:
        fail(f"no incident {incident_id}" + (f" of school {school}" if school else ""))
    recorded = f"revealed to {reader.name}: recorded in the ledger as entry {revealed.read_seq}"
    if not as_csv:
        _pupils_table(incident_id, revealed)
        print(recorded)
        return
    text = "".join(
        csv_chunks(FAMILIES_COLUMNS, families_rows(incident_id, revealed.pupils, event_name))
    )
    if csv_file is None:
        sys.stdout.write(text)
    else:
        try:
            write_private(csv_file, text.encode())
        except OSError as exc:
            fail(f"cannot write {csv_file}: {exc.strerror or exc}")
        print(f"{len(revealed.pupils)} pupils written to {csv_file}", file=sys.stderr)
    print(recorded, file=sys.stderr)


def _pupils_table(incident_id: int, revealed: Revealed) -> None:
    console = Console(highlight=False)
    if not revealed.pupils:
        console.print(f"no pupil is named by the events of incident {incident_id}")
        return
    table = Table(header_style="bold", title=f"pupils concerned by incident {incident_id}")
    for column in ("UPN", "date of birth", "school", "events concerned"):
        table.add_column(column)
    for pupil in revealed.pupils:
        table.add_row(
            plain(pupil.upn or "erased"),
            shown_day(date.fromisoformat(pupil.dob)) if pupil.dob else "not known",
            ", ".join(pupil.schools) or "-",
            Text("\n").join(
                plain(f"{event_name(e.event_type)}, {event_day(e)}") for e in pupil.events
            ),
        )
    console.print(table)
