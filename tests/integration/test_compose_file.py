"""docker-compose.yml, the production-like deployment, read by docker-compose itself (an
implementation we did not write; it checks the file without a Docker engine) and by
PyYAML: a file compose refuses is a trust that cannot deploy on Monday."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.transport.processes import Worker

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
DOCKER_COMPOSE = shutil.which("docker-compose")
needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="docker-compose (Debian package docker-compose) not installed"
)
#: What the file's header says to export before ``docker compose up``.
SECRETS = {
    "SHARING_AUDIT_DB_PASSWORD": "owner-password",
    "SHARING_AUDIT_APP_DB_PASSWORD": "app-password",
    "SHARING_AUDIT_PSEUDONYM_KEY": "5a" * 32,
    "SHARING_AUDIT_LOG_KEY": "6b" * 32,
}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` of the file, with only ``env`` (and PATH) set."""
    assert DOCKER_COMPOSE is not None
    return subprocess.run(
        [DOCKER_COMPOSE, "-f", str(COMPOSE_FILE), "config"],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_docker_compose
def test_docker_compose_accepts_the_file_with_the_secrets_its_header_names() -> None:
    done = compose_config(SECRETS)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"kafka", "postgres", "migrate", "worker", "desk"}
    worker = services["worker"]["environment"]
    assert worker["SHARING_AUDIT_LOG_KEY"] == SECRETS["SHARING_AUDIT_LOG_KEY"]
    assert "app-password@postgres" in worker["SHARING_AUDIT_DATABASE_URL"]


@needs_docker_compose
@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_docker_compose_refuses_the_file_naming_a_secret_not_set(secret: str) -> None:
    done = compose_config({k: v for k, v in SECRETS.items() if k != secret})
    assert done.returncode != 0
    assert f"set {secret}" in done.stderr


def test_the_compose_file_gives_a_worker_as_long_to_stop_as_up_does() -> None:
    """A worker told to stop records what it has taken first; killed sooner, it is all
    taken again by the next worker."""
    worker = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["worker"]
    grace = inspect.signature(Worker.stop).parameters["grace"].default
    assert worker["stop_grace_period"] == f"{grace:.0f}s"
