"""The ``sharing-audit`` command line: one app, its commands from the modules beside this.

Predictable mistakes (a missing file, a malformed pack) end with one line on standard
error and a non-zero exit status, never a traceback (:mod:`pipeline.cli.exits`).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipeline import __version__
from pipeline.cli.audit import audit_app
from pipeline.cli.check import check, simulate
from pipeline.cli.demo import demo
from pipeline.cli.exits import fail
from pipeline.cli.files import census_app, ctf_app, watch
from pipeline.cli.incidents import incidents_app
from pipeline.cli.ledger import db_app, ledger_app
from pipeline.cli.ledger_retention import ledger_retention_app
from pipeline.cli.log import log_app
from pipeline.cli.notice import notice_app
from pipeline.cli.policy import policy_app, schemas_app
from pipeline.cli.pupils import pupils_app
from pipeline.cli.receipts import receipts
from pipeline.cli.reconcile import reconcile
from pipeline.cli.report import report_app
from pipeline.cli.retention import retention_app
from pipeline.cli.rotate import rotate_key_command
from pipeline.cli.serve import serve
from pipeline.cli.stream import broker, emit, up
from pipeline.cli.users import users_app
from pipeline.cli.witness import witness_app
from pipeline.cli.worker import worker
from pipeline.logging import configure as configure_logging
from pipeline.settings import SettingsInvalid, settings

app = typer.Typer(
    name="sharing-audit",
    help="Audit how a school shares pupil personal data: check events against policy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (check, simulate, demo, serve, broker, emit, up, worker, watch, reconcile):
    app.command()(command)
for group, name in (
    (ctf_app, "ctf"),
    (census_app, "census"),
    (policy_app, "policy"),
    (schemas_app, "schemas"),
    (ledger_app, "ledger"),
    (db_app, "db"),
    (log_app, "log"),
    (audit_app, "audit"),
    (witness_app, "witness"),
    (incidents_app, "incidents"),
    (pupils_app, "pupils"),
    (users_app, "users"),
    (report_app, "report"),
    (retention_app, "retention"),
    (notice_app, "notice"),
):
    app.add_typer(group, name=name)
ledger_app.add_typer(ledger_retention_app, name="retention")
audit_app.command("receipts")(receipts)
ledger_app.command("rotate-key")(rotate_key_command)


def _version(value: bool) -> None:
    if value:
        print(f"sharing-audit {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """sharing-audit: an audit pipeline for pupil data sharing in English schools."""
    try:
        asked = settings().log_level  # a level asked for shows the client library's records too
    except SettingsInvalid as exc:  # checked here once, before any command reads them
        if not _asks_for_help():
            fail(f"the environment's settings: {exc}")
        asked = None  # a command's help reads no setting: it is shown all the same
    configure_logging(level=asked or "WARNING", quiet_clients=asked is None)


def _asks_for_help() -> bool:
    """Whether the command line asks for a command's help: the group's callback runs
    before the command's own options are read, so it is told from the process's
    arguments."""
    return "--help" in sys.argv[1:]


def main() -> None:
    app()
