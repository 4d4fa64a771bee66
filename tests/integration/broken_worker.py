"""A worker whose ledger fails every batch, as a bug in the writer's answer would:
``python -m tests.integration.broken_worker BOOTSTRAP``. The real Faust app and agents,
only the sink replaced; it exits as the worker would."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust

from agents.app import create_app
from agents.recorder import Batching
from pipeline.logging import configure
from pipeline.transport.kafka import KafkaConfig


class FailingSink:
    """Fails every batch it is given; has no alerts to relay."""

    async def write(self, records: Sequence[Any]) -> list[Any]:
        raise RuntimeError("a bug in the writer's answer")

    async def due_alerts(self, hold: float, limit: int) -> Any:
        raise RuntimeError("no ledger")

    async def mark_relayed(self, seqs: Sequence[int], status: str) -> None:
        return None


def main(bootstrap: str) -> None:
    configure(level="INFO", json=True)
    app = create_app(
        KafkaConfig(bootstrap=bootstrap),
        FailingSink(),  # type: ignore[arg-type]
        Batching(patience=0.0),
        datadir=Path(tempfile.mkdtemp(prefix="broken-worker-")),
    )
    faust.Worker(
        app, loglevel="WARNING", quiet=True, override_logging=False
    ).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1])
