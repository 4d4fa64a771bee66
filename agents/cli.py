"""The command line with the worker: the ``sharing-audit`` console script.

The worker is the one command that needs Faust; it is added here, in the outer layer, so
that ``pipeline`` never imports ``agents``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli import app, policy_or_fail
from pipeline.console import fail
from pipeline.kafka import KafkaUnavailable
from pipeline.ledger_cli import DbOption, database_url, pseudonym_key_for, shown
from pipeline.logging import configure as configure_logging
from pipeline.settings import settings
from pipeline.stream_cli import broker_config


@app.command()
def worker(
    broker: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap HOST:PORT (else SHARING_AUDIT_BROKER)."),
    ] = None,
    db: DbOption = None,
    policy: Annotated[
        str | None, typer.Option("--policy", "-p", help="Shipped pack name or YAML file.")
    ] = None,
) -> None:
    """Run the agents: decide every event on the input topics into the ledger."""
    from agents.app import Batching
    from agents.worker import LedgerNotReady, WorkerConfig, run_worker

    config = settings()
    configure_logging(level=config.log_level)
    url = database_url(db)
    worker_config = WorkerConfig(
        kafka=broker_config(broker),
        database_url=url,
        policy=policy_or_fail(policy),
        pseudonym_key=pseudonym_key_for(db),
        batching=Batching(size=config.batch_size, alert_hold=config.alert_hold_seconds),
        log_level=config.log_level,
        webhooks=tuple(config.webhook_urls),
        webhook_secret=(config.webhook_secret or "").encode(),
        desk_url=config.desk_url,
    )
    if worker_config.webhooks and not config.webhook_secret:
        fail("set SHARING_AUDIT_WEBHOOK_SECRET: webhook notices are signed with it")
    try:
        run_worker(worker_config)
    except LedgerNotReady as exc:
        fail(f"{shown(url)}: {exc}")
    except KafkaUnavailable as exc:
        fail(str(exc))


def main() -> None:
    app()
