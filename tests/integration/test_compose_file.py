"""docker-compose.yml, the production-like deployment, read by docker-compose itself (an
implementation we did not write; it checks the file without a Docker engine) and by
PyYAML: a file compose refuses is a trust that cannot deploy on Monday."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pipeline.engine import Position
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.storage.errors import LedgerError
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.transport.processes import Worker
from tests.factory import consent_given, line, referral

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


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql (PostgreSQL's client) not installed")
def test_the_compose_files_database_setup_gives_the_worker_a_role_that_records(
    pg_url: str, policy: Policy
) -> None:
    """What compose does on a new volume, run here without Docker on this machine's
    PostgreSQL: the postgres service's init script makes the application role, the
    migrate service's own command builds the schema as its owner and grants the role its
    rights, and the role then records events as the worker does."""
    url = make_url(pg_url)
    compose = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    init = compose["postgres"]["volumes"][1].split(":")[0]
    made = subprocess.run(
        ["sh", str(COMPOSE_FILE.parent / init)],
        env={
            "PATH": os.environ.get("PATH", ""),
            "PGHOST": url.host or "127.0.0.1",
            "PGPORT": str(url.port or 5432),
            "PGPASSWORD": url.password or "",
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_DB": url.database or "",
            "SHARING_AUDIT_APP_DB_PASSWORD": SECRETS["SHARING_AUDIT_APP_DB_PASSWORD"],
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    owner = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        migrate = compose["migrate"]["entrypoint"]
        migrated = subprocess.run(
            migrate,
            env={
                **os.environ,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "SHARING_AUDIT_DATABASE_URL": pg_url,
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stderr
        app = url.set(username="sharing_app", password=SECRETS["SHARING_AUDIT_APP_DB_PASSWORD"])
        ledger = Ledger.open(app.render_as_string(hide_password=False))
        writer = LedgerWriter(ledger, policy, pseudonymiser(bytes(range(32))))
        events = [consent_given(), referral(lawful_basis="consent", consent_ref="C-1")]
        writer.write([(line(e), Position.line("f", n)) for n, e in enumerate(events, 1)])
        with ledger.engine.connect() as connection:
            assert verify(connection).ok
            with pytest.raises(LedgerError, match="permission denied"):
                connection.execute(text("DELETE FROM ledger_entry"))
        ledger.engine.dispose()
    finally:
        with owner.connect() as connection:
            if connection.execute(
                text("SELECT 1 FROM pg_roles WHERE rolname = 'sharing_app'")
            ).first():
                connection.execute(text("DROP OWNED BY sharing_app"))
                connection.execute(text("DROP ROLE sharing_app"))
        owner.dispose()


@pytest.mark.parametrize("service", ["worker", "desk"])
def test_each_services_command_is_one_the_image_runs(service: str) -> None:
    """The image's entry point is ``sharing-audit``: a service's command (and its options)
    must be one of its commands, or the service exits at once."""
    command = yaml.safe_load(COMPOSE_FILE.read_text())["services"][service]["command"]
    asked = subprocess.run(
        [str(Path(sys.executable).parent / "sharing-audit"), *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert asked.returncode == 0, asked.stderr
