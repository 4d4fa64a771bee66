"""The structlog events code logs, read as the worker writes them (JSON lines on standard
error): ``structlog.testing.capture_logs`` misses loggers cached before it starts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.logging import configure as configure_logging


def logged(capsys: pytest.CaptureFixture[str], run: Callable[[], Any]) -> list[dict[str, Any]]:
    """Every event logged at INFO or above while ``run`` runs, and nothing else."""
    capsys.readouterr()
    configure_logging(level="INFO", json=True)
    try:
        run()
        err = capsys.readouterr().err
    finally:
        configure_logging(level="WARNING")
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]
