"""``sharing-audit serve`` and ``sharing-audit users ...``: the API and who may use it."""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.console import fail, policy_or_fail
from pipeline.ledger.asking import BadFilter, instant
from pipeline.ledger.store import now_text, utc_text
from pipeline.ledger_cli import DbOption, database_url, open_ledger, pseudonym_for, reading
from pipeline.presenting import plain
from pipeline.users import (
    Role,
    UnknownUser,
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
    db: DbOption = None,
) -> None:
    """Add a user and print their API token (shown once: it is stored only hashed). The
    change is recorded in the ledger, as every change to users is."""
    ledger = open_ledger(db)
    try:
        token = add_user(ledger, name, role, by=getpass.getuser(), expires_at=_expiry(expires))
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
    """Give a user a new token and print it; the old token and its sessions stop working."""
    ledger = open_ledger(db, create=False)
    try:
        token = rotate_user(ledger, name, by=getpass.getuser(), expires_at=_expiry(expires))
    except UnknownUser as exc:
        fail(str(exc), 1)
    print(token)


@users_app.command("list")
def users_list(db: DbOption = None) -> None:
    """Who may use the desk, and as what."""
    ledger = open_ledger(db, create=False)
    with reading(ledger) as connection:
        found = users(connection)
    table = Table("name", "role", "expires", "revoked", header_style="bold")
    for user in found:
        table.add_row(
            plain(user.name),
            user.role.value,
            plain(user.expires_at or ""),
            plain(user.revoked_at or ""),
        )
    Console().print(table)


def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    policy: Annotated[
        str | None, typer.Option("--policy", "-p", help="Shipped pack name or YAML file.")
    ] = None,
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(
            help="The TLS proxy's addresses (comma-separated, or *): their X-Forwarded-Proto "
            "and X-Forwarded-For are believed, so the desk knows it is served over HTTPS."
        ),
    ] = "127.0.0.1",
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processes serving at once (one per core).")
    ] = 1,
) -> None:
    """Serve the breach desk, the auditors' search and reports, and the HTTP API (its
    OpenAPI description at /openapi.json). Behind a TLS proxy on another host, name it
    with --forwarded-allow-ips: cookies are then marked Secure and HSTS is sent."""
    import uvicorn

    from pipeline.api.app import create_api

    pack = policy_or_fail(policy)
    ledger = open_ledger(db)
    api = create_api(ledger, policy=pack, pseudonym=pseudonym_for(db))  # checked here, once
    print(
        f"serving on http://{host}:{port} (OpenAPI: http://{host}:{port}/openapi.json)", flush=True
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        "proxy_headers": True,
        "forwarded_allow_ips": forwarded_allow_ips,
    }
    if workers == 1:
        uvicorn.run(api, **options)
        return
    # Each worker process builds the same app from the settings: the ledger and pack are
    # passed on in the environment, as a container would set them.
    os.environ["SHARING_AUDIT_DATABASE_URL"] = database_url(db)
    if policy is not None:
        os.environ["SHARING_AUDIT_POLICY"] = policy
    uvicorn.run("pipeline.api.app:app_from_settings", factory=True, workers=workers, **options)
