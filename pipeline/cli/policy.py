"""``sharing-audit policy`` and ``schemas``: the packs a school edits, and the event
contract as JSON Schema."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.cli.exits import EXIT_UNREADABLE, fail, policy_or_fail
from pipeline.cli.terminal import print_policy
from pipeline.packs import load_pack
from pipeline.policy.pack import PackError
from schemas.export import write_schemas

policy_app = typer.Typer(help="Show and validate policy packs.", no_args_is_help=True)
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
