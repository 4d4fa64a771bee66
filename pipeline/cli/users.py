"""``sharing-audit users``: who may use the breach desk and the API, and their tokens."""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.exits import fail, schools_or_fail
from pipeline.cli.options import DbOption, SchoolsOption, open_ledger, reading, school_scope
from pipeline.cli.terminal import WHEN_WIDTH, plain, school_time
from pipeline.ledger.reading.asking import BadFilter, instant
from pipeline.ledger.storage.store import now_text, utc_text
from pipeline.users import (
    BadName,
    NoLongerValid,
    NotBorneOut,
    Role,
    UnknownUser,
    User,
    UserExists,
    add_user,
    revoke_user,
    rotate_user,
    users,
)

users_app = typer.Typer(
    help="People who may use the breach desk and the API.", no_args_is_help=True
)


ExpiresOption = Annotated[
    str | None,
    typer.Option(
        "--expires", help="When the token stops working: 90d, a date (2027-07-31) or a time."
    ),
]


def _expiry(text: str | None) -> str | None:
    """``--expires`` as the ledger's UTC text: days from now, a date (midnight in
    England) or an RFC 3339 time; a clear exit for anything else or for the past."""
    if text is None:
        return None
    if text.endswith("d") and text[:-1].isdigit():
        return utc_text(datetime.now(UTC) + timedelta(days=int(text[:-1])))
    try:
        moment = instant(text, "--expires")
    except BadFilter as exc:
        fail(f"{exc}, or a number of days such as 90d")
    if moment <= now_text():
        fail(f"--expires {text!r} is in the past")
    return moment


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[Role, typer.Option(help="dpo acts on incidents; auditor reads; admin manages")],
    expires: ExpiresOption = None,
    school: Annotated[
        list[str] | None,
        typer.Option(
            "--school",
            help="A school they may see (its URN), again for each; none: every school.",
        ),
    ] = None,
    schools: SchoolsOption = None,
    db: DbOption = None,
) -> None:
    """Add a user and print their API token (shown once: it is stored only hashed). The
    change is recorded in the ledger, as every change to users is. With --school, they
    see those schools' entries, pupils, incidents and reports alone. A name may not begin
    or end with a space, hold a control character, or differ from an existing user's only
    by case or spaces."""
    scope = school or []
    register = schools_or_fail(schools)
    for urn in scope:
        school_scope(urn, register)  # a URN, and one of the register's when given
    ledger = open_ledger(db)
    try:
        token = add_user(
            ledger, name, role, by=getpass.getuser(), expires_at=_expiry(expires), schools=scope
        )
    except BadName as exc:
        fail(str(exc))
    except UserExists as exc:
        fail(str(exc), 1)
    print(token)


@users_app.command("revoke")
def users_revoke(name: str, db: DbOption = None) -> None:
    """End a user's token and desk sessions now."""
    ledger = open_ledger(db, create=False)
    try:
        revoke_user(ledger, name, by=getpass.getuser())
    except UnknownUser as exc:
        fail(str(exc), 1)
    print(f"{name}: token revoked, sessions ended")


@users_app.command("rotate")
def users_rotate(name: str, expires: ExpiresOption = None, db: DbOption = None) -> None:
    """Give a user a new token and print it; the old token and its sessions stop working.
    The token keeps its expiry unless --expires gives another. A revoked user is not
    brought back (add them under a new name), nor one whose row the ledger's entries do
    not bear out (see ledger verify)."""
    ledger = open_ledger(db, create=False)
    try:
        token = rotate_user(ledger, name, by=getpass.getuser(), expires_at=_expiry(expires))
    except (UnknownUser, NoLongerValid, NotBorneOut) as exc:
        fail(str(exc), 1)
    print(token)


@users_app.command("list")
def users_list(db: DbOption = None) -> None:
    """Who may use the desk, and as what."""
    ledger = open_ledger(db, create=False)
    with reading(ledger) as connection:
        found = users(connection)
    Console().print(users_table(found))


def users_table(found: Iterable[User]) -> Table:
    """Who may use the desk: times in school time, whose words a narrow column wraps
    between, so that the table fits 80 columns with each name whole."""
    table = Table(header_style="bold")
    table.add_column("name", no_wrap=True)
    table.add_column("role")
    table.add_column("schools")
    table.add_column("expires", max_width=WHEN_WIDTH)
    table.add_column("revoked", max_width=WHEN_WIDTH)
    for user in found:
        table.add_row(
            plain(user.name),
            user.role.value,
            "every school" if user.scope is None else ", ".join(user.scope),
            school_time(user.expires_at),
            school_time(user.revoked_at),
        )
    return table
