"""``sharing-audit serve`` and ``sharing-audit users ...``: the API and who may use it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.console import fail, policy_or_fail
from pipeline.ledger_cli import DbOption, open_ledger, pseudonym_for, reading
from pipeline.presenting import plain
from pipeline.users import Role, UserExists, add_user, users

users_app = typer.Typer(help="People who may use the breach desk and the API.",
                        no_args_is_help=True)  # fmt: skip


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[Role, typer.Option(help="dpo acts on incidents; auditor reads; admin manages")],
    db: DbOption = None,
) -> None:
    """Add a user and print their API token (shown once: it is stored only hashed)."""
    ledger = open_ledger(db)
    try:
        token = add_user(ledger, name, role)
    except UserExists as exc:
        fail(str(exc), 1)
    print(token)


@users_app.command("list")
def users_list(db: DbOption = None) -> None:
    """Who may use the desk, and as what."""
    ledger = open_ledger(db, create=False)
    with reading(ledger) as connection:
        found = users(connection)
    table = Table("name", "role", header_style="bold")
    for user in found:
        table.add_row(plain(user.name), user.role.value)
    Console().print(table)


def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    policy: Annotated[
        str | None, typer.Option("--policy", "-p", help="Shipped pack name or YAML file.")
    ] = None,
) -> None:
    """Serve the breach desk, the auditors' search and reports, and the HTTP API (its
    OpenAPI description at /openapi.json)."""
    import uvicorn

    from pipeline.api.app import create_api

    pack = policy_or_fail(policy)
    ledger = open_ledger(db)
    api = create_api(ledger, policy=pack, pseudonym=pseudonym_for(db))
    print(
        f"serving on http://{host}:{port} (OpenAPI: http://{host}:{port}/openapi.json)", flush=True
    )
    uvicorn.run(api, host=host, port=port, log_config=None)
