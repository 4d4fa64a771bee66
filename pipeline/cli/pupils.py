"""``sharing-audit pupils erase``: erase a pupil on request (UK GDPR Art 17), as the DPO.

The pupil's UPN and date of birth are deleted and the erasure is recorded in the chain
(:mod:`pipeline.ledger.privacy.erasure`); refused, naming every reason, while the data is still
needed. Nothing recognises the UPN afterwards, so the statement for the family is printed
when the erasure is made (``report sar --erasure N`` prints it again).
"""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from pipeline.cli.exits import fail, policy_or_fail, school_or_fail, schools_or_fail
from pipeline.cli.options import (
    DbOption,
    PolicyOption,
    SchoolsOption,
    asked,
    in_force,
    open_ledger,
    pseudonym_for,
    reading,
)
from pipeline.cli.terminal import plain
from pipeline.incidents.desk import open_incidents_of
from pipeline.ledger.privacy.erasure import ErasureRefused, Needs, erase, erasure_details
from pipeline.ledger.reading.asking import pupil_key
from pipeline.ledger.writing.pupils import NOBODY, finder
from pipeline.policy.schools import policy_of
from pipeline.reports.erasure import CANNOT_UNDO, erasure_statement
from pipeline.schooltime import school_day

pupils_app = typer.Typer(help="A pupil's data in the ledger: erasure.", no_args_is_help=True)

#: Exit status when the erasure was refused, or not confirmed.
EXIT_REFUSED = 1


@pupils_app.command("erase")
def pupils_erase(
    upn: Annotated[str, typer.Option("--upn", help="The pupil's UPN.")],
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="Why (kept for ever in the ledger: no name, no date of birth, no UPN).",
        ),
    ],
    by: Annotated[
        str | None, typer.Option("--by", help="Who erases (default: your login name).")
    ] = None,
    db: DbOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask to confirm.")] = False,
) -> None:
    """Erase a pupil at their family's request (UK GDPR Art 17): their UPN and date of
    birth are deleted, for good, and the erasure is recorded in the ledger. Refused,
    naming why, while a retention period or an open incident still needs the data.
    Prints the statement to give the family."""
    who = by or getpass.getuser()
    try:
        erasure_details(who, reason, "request", 0)
    except ErasureRefused as refused:
        fail(f"--{refused}")
    register = schools_or_fail(schools)
    pack = policy_or_fail(policy)
    pseudonymise = pseudonym_for(db)
    ledger = open_ledger(db, create=False)
    pack, register = in_force(ledger, pack, register)
    key = asked(lambda: pupil_key(upn, finder(ledger), "--upn"))
    if key == NOBODY:
        fail("no entry names a pupil of this UPN: there is nothing to erase")
    _confirmed(yes)
    needs = Needs(
        lambda urn: policy_of(register, urn, pack),
        school_day(datetime.now(UTC)),
        pseudonymise,
        open_incidents_of,
        register,
    )
    try:
        with reading(ledger):
            erased = erase(ledger, key, by=who, reason=reason, rule="request", needs=needs)
    except ErasureRefused as refused:
        print("sharing-audit: the pupil cannot be erased yet:", file=sys.stderr)
        for said in refused.reasons:
            print(f"  - {plain(said)}", file=sys.stderr)
        raise typer.Exit(EXIT_REFUSED) from None
    with reading(ledger) as connection:
        statement = erasure_statement(connection, erased.seq, None, register, school_or_fail())
    assert statement is not None  # the entry just made
    print(plain(statement.text))
    if erased.scrubbed != "zeroed" and erased.scrubbed != "rewritten":
        print(f"the database's freed space: {erased.scrubbed}", file=sys.stderr)


def _confirmed(yes: bool) -> None:
    """Say what cannot be undone and ask; without a terminal to ask at, ``--yes`` is
    required."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail("erasing cannot be undone: give --yes to erase without being asked")
    print("Erasing this pupil cannot be undone:")
    for said in CANNOT_UNDO:
        print(f"  - {said}")
    if not typer.confirm("Erase the pupil?", default=False):
        print("nothing erased")
        raise typer.Exit(EXIT_REFUSED)
