"""Real databases for the ledger's contract suite: SQLite files and PostgreSQL.

PostgreSQL, in order of choice: ``SHARING_AUDIT_TEST_PG_URL`` (an admin URL), the server
on 127.0.0.1:5432, or a testcontainers container where a Docker engine answers. Each test
gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from pipeline.transport.kafka import KafkaConfig
from tests.integration.streaming import kafka_broker

LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except OperationalError:
        return False


def _docker_postgres() -> Iterator[str] | None:
    try:
        import docker

        docker.from_env().ping()
        from testcontainers.community.postgres import PostgresContainer
    except Exception:  # no SDK, no engine, or an engine that does not answer
        return None

    def run() -> Iterator[str]:
        with PostgresContainer("postgres:18", driver="psycopg") as container:
            yield container.get_connection_url()

    return run()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    configured = os.environ.get("SHARING_AUDIT_TEST_PG_URL")
    if configured:
        yield configured
        return
    if _reachable(LOCAL_PG):
        yield LOCAL_PG
        return
    container = _docker_postgres()
    if container is None:
        pytest.skip("no PostgreSQL: none on 127.0.0.1:5432, no URL given, no Docker engine")
    yield from container


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    name = f"sa_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def kafka() -> Iterator[KafkaConfig]:
    """A fresh broker for this test (the embedded one; a container where Docker runs)."""
    yield from kafka_broker()
