"""On PostgreSQL, workers and the desk connect as a role that may read and append the
ledger and nothing more: even with its password, no one rewrites history through it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pipeline.engine import Position
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.errors import LedgerError
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.users import Role, add_user
from tests.factory import consent_given, line, referral
from tests.integration.test_ledger_cli import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def app_url(pg_url: str) -> Iterator[str]:
    """The URL of a fresh login role, granted the application's privileges by the owner."""
    role = f"sa_app_{uuid.uuid4().hex[:10]}"
    owner = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN"))
    schema.upgrade(Ledger.open(pg_url).engine)
    granted = run("db", "grant", role, "--db", pg_url)
    assert granted.returncode == 0, granted.stderr
    try:
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with owner.connect() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))
        owner.dispose()


@pytest.fixture
def written(app_url: str, policy: Policy) -> Ledger:
    """What the role is for: recording events, users and reads, as the workers and desk do."""
    ledger = Ledger.open(app_url)
    writer = LedgerWriter(ledger, policy, pseudonymiser(bytes(range(32))))
    breach = referral(
        lawful_basis="consent", consent_ref="C-1", special_condition="9.2.a", categories=["medical"]
    )
    events = [consent_given(), breach]
    writer.write([(line(e), Position.line("f", n)) for n, e in enumerate(events, 1)])
    add_user(ledger, "dpo", Role.DPO)
    return ledger


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entry SET decision = 'allowed'",
        "DELETE FROM ledger_entry",
        "TRUNCATE ledger_entry",
        "UPDATE register_fact SET fact = '{}'",
        "DELETE FROM event_payload",
        "DROP TRIGGER ledger_entry_no_change ON ledger_entry",
        "ALTER TABLE ledger_entry DISABLE TRIGGER ALL",
        "DELETE FROM ledger_meta",
    ],
)
def test_the_application_role_may_not_rewrite_history(written: Ledger, statement: str) -> None:
    with (
        pytest.raises(LedgerError, match=r"permission denied|must be owner"),
        written.engine.begin() as c,
    ):
        c.execute(text(statement))
    with written.engine.connect() as connection:
        assert verify(connection).ok


def test_the_application_role_records_and_reads(written: Ledger) -> None:
    with written.engine.connect() as connection:
        result = verify(connection)
    assert result.ok and result.count == 3  # two events, and the user added


def test_a_role_name_that_is_not_one_is_refused(pg_url: str) -> None:
    schema.upgrade(Ledger.open(pg_url).engine)
    done = run("db", "grant", "app; DROP TABLE ledger_entry", "--db", pg_url)
    assert done.returncode == 2 and "a role name is" in done.stderr


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("INSERT INTO entry_pupil (pupil, seq) SELECT min(id), 99 FROM pupil", "entry_pupil"),
        ("UPDATE app_user SET role = 'admin'", "app_user: user 'dpo' has role admin"),
        ("UPDATE app_user SET token_hash = repeat('b', 64)", "app_user: user 'dpo' has a token"),
        (
            "INSERT INTO app_user (name, role, token_hash, created_at) "
            "VALUES ('mallory', 'admin', repeat('c', 64), '2026-01-01')",
            "no user_action entry records them",
        ),
    ],
)
def test_what_the_application_role_may_change_beside_the_chain_is_named(
    written: Ledger, statement: str, named: str
) -> None:
    """The role may insert into the indexes and update users: verify rebuilds them."""
    with written.engine.begin() as connection:
        connection.execute(text(statement))
    with written.engine.connect() as connection:
        result = verify(connection)
    assert not result.ok and named in str(result.fault)


def test_the_application_role_cannot_rotate_the_pseudonym_key_and_leaves_no_key_behind(
    written: Ledger, app_url: str, tmp_path: Path
) -> None:
    """Rotating records another key in ledger_meta, which the role may not update: the
    rotation is refused whole, saying who may run it, and writes no new key file."""
    new_key = tmp_path / "new.key"
    done = run(
        "ledger", "rotate-key", "--db", app_url, "--new-key-file", str(new_key),
        env={"SHARING_AUDIT_PSEUDONYM_KEY": bytes(range(32)).hex()},
    )  # fmt: skip
    assert done.returncode == 2 and "run it as the database's owner" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not new_key.exists()
    with written.engine.connect() as connection:
        assert verify(connection, pseudonymiser(bytes(range(32)))).ok


def test_a_role_granted_before_the_pupil_index_was_renumbered_keeps_its_rights(
    pg_url: str, policy: Policy
) -> None:
    """Migration 0019 rebuilds the pupil index as new tables: a role granted on the old
    one by `db grant` before the upgrade may still append to both afterwards."""
    role = f"sa_app_{uuid.uuid4().hex[:10]}"
    owner = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN"))
    try:
        engine = Ledger.open(pg_url).engine
        config = schema._config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0018")
        with owner.connect() as connection:
            connection.execute(text(f"GRANT SELECT, INSERT ON entry_pupil TO {role}"))
        schema.upgrade(engine)
        with owner.connect() as connection:
            rights = connection.execute(
                text(
                    "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
                    "WHERE grantee = :role ORDER BY 1, 2"
                ),
                {"role": role},
            ).all()
        assert [tuple(r) for r in rights] == [
            ("entry_pupil", "INSERT"),
            ("entry_pupil", "SELECT"),
            ("pupil", "INSERT"),
            ("pupil", "SELECT"),
        ]
    finally:
        with owner.connect() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))
        owner.dispose()
