"""``sharing-audit ledger retention apply``: the ledger's own retention, erasing every
pupil kept identifiable past it (:mod:`pipeline.retention.forgetting`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from pipeline.cli.exits import fail, policy_or_fail, schools_or_fail
from pipeline.cli.ledger import key_if_any
from pipeline.cli.options import DbOption, PolicyOption, SchoolsOption, in_force, open_ledger
from pipeline.cli.retention import as_of_day
from pipeline.ledger.storage.errors import LedgerError
from pipeline.plural import counted
from pipeline.policy.schools import policy_of
from pipeline.retention.forgetting import Plan, applied, planned
from pipeline.schooltime import shown_day

ledger_retention_app = typer.Typer(
    help="The ledger's own retention: erase the pupils it has kept long enough.",
    no_args_is_help=True,
)

#: How much of a pseudonym names a pupil in what this prints (never a UPN).
PREFIX = 12
#: From how many pupils on, erasing shows a progress bar.
MANY = 1000


@ledger_retention_app.command("apply")
def retention_apply(
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="The day to apply it on, YYYY-MM-DD (default: today)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what it would do; erase nothing.")
    ] = False,
    db: DbOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
) -> None:
    """Erase every pupil whose records' last retention period ended longer ago than the
    ledger keeps them (each school's pack: ledger_retention), except one an open incident
    concerns or whose pseudonym the key still remakes (both listed, with why); and erase
    again any identity row of an erased pupil that a restored backup brought back."""
    day = as_of_day(as_of)
    register = schools_or_fail(schools)
    pack = policy_or_fail(policy)
    ledger = open_ledger(db, create=False)
    pack, register = in_force(ledger, pack, register)
    pseudonyms = key_if_any(ledger, db)
    console = Console(highlight=False)
    try:
        with ledger.engine.connect() as connection:
            plan = planned(connection, lambda urn: policy_of(register, urn, pack), day, pseudonyms)
        if dry_run:
            _said(console, plan)
            return
        if len(plan.erase) >= MANY:
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("erasing pupils", total=len(plan.erase))
                done = applied(ledger, plan, lambda n: bar.advance(task, n))
        else:
            done = applied(ledger, plan)
    except LedgerError as exc:
        fail(f"cannot apply the ledger's retention: {exc}")
    _passed_over(console, plan, "passed over")
    _say(
        console,
        f"on {shown_day(day)}: erased {counted(done.erased, 'pupil')}, "
        f"passed over {done.skipped}; identity rows of erased pupils erased again: "
        f"{done.restored}",
    )


def _said(console: Console, plan: Plan) -> None:
    """What applying ``plan`` would do, pupils by pseudonym prefix."""
    for key in plan.erase:
        _say(console, f"would erase {key[:PREFIX]}")
    _passed_over(console, plan, "would pass over")
    _say(
        console,
        f"on {shown_day(plan.as_of)} it would erase {counted(len(plan.erase), 'pupil')}, "
        f"pass over {len(plan.skipped)}, and erase again "
        f"{counted(plan.restored, 'identity row')} of erased pupils (dry run: nothing erased)",
    )


def _passed_over(console: Console, plan: Plan, done: str) -> None:
    for skipped in plan.skipped:
        _say(console, f"{done} {skipped.pupil[:PREFIX]}: {skipped.why}")


def _say(console: Console, text: str) -> None:
    """A line as it is: no markup, no wrapping inside it."""
    console.print(text, markup=False, soft_wrap=True)
