"""``sharing-audit witness``: run a witness of other schools' logs (a trust or a local
authority runs it), and print its verifier key for the logs to configure."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.exits import fail
from pipeline.cli.keys import log_key
from pipeline.ledger.storage.errors import LedgerError
from pipeline.settings import settings
from pipeline.transparency.note import Signer
from pipeline.witness.state import (
    DEFAULT_WITNESS_DB,
    WitnessKeyError,
    witness_engine,
    witness_signer,
)

witness_app = typer.Typer(
    help="A witness of other logs: cosigns only checkpoints that extend what it saw.",
    no_args_is_help=True,
)
WitnessDbOption = Annotated[
    str,
    typer.Option(
        "--db",
        help=f"The witness's own state (default {DEFAULT_WITNESS_DB}; never the ledger "
        "SHARING_AUDIT_DATABASE_URL names: a witness keeps apart from the logs it watches).",
    ),
]


def _signer(db: str) -> Signer:
    config = settings()
    try:
        return witness_signer(config.witness_key, config.witness_name, db)
    except WitnessKeyError as exc:
        fail(str(exc))


@witness_app.command("vkey")
def vkey(db: WitnessDbOption = DEFAULT_WITNESS_DB) -> None:
    """The witness's verifier key, one line: the logs it witnesses configure it."""
    print(_signer(db).verifier.vkey())


@witness_app.command("serve")
def serve(
    log: Annotated[
        list[str],
        typer.Option(
            "--log",
            metavar="KEY|FILE",
            help="A log's verifier key (the line its sharing-audit log vkey prints), or a file "
            "holding it (repeatable).",
        ),
    ],
    db: WitnessDbOption = DEFAULT_WITNESS_DB,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8010,
) -> None:
    """Witness the logs given, as C2SP tlog-witness says: logs POST <url>/add-checkpoint
    (at most 59,964 bytes); monitors GET <url>/<SHA-256 of the origin, hex>/checkpoint for
    the latest checkpoint cosigned, with the log's signature and the witness's."""
    import uvicorn

    from pipeline.witness.app import create_witness

    logs = [log_key(given, "--log") for given in log]
    signer = _signer(db)
    try:
        engine = witness_engine(db)
    except LedgerError as exc:
        fail(f"cannot open the witness's state {db}: {exc}")
    print(f"witness {signer.verifier.vkey()} on http://{host}:{port}", flush=True)
    uvicorn.run(create_witness(engine, signer, logs), host=host, port=port, log_level="warning")
