"""What the commands share: the options for the ledger, the policy pack and the broker,
and opening what they name, or a clear exit."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer

from pipeline.cli.exits import fail
from pipeline.ledger import schema
from pipeline.ledger.asking import BadFilter
from pipeline.ledger.errors import LedgerError, NotADatabase
from pipeline.ledger.keys import KeyRefused, ledger_key
from pipeline.ledger.reads import Requester
from pipeline.ledger.store import Ledger, shown_url
from pipeline.policy.schools import Schools
from pipeline.pseudonym import (
    Pseudonymiser,
    PseudonymKeyError,
    load_or_create_key,
    pseudonymiser,
)
from pipeline.settings import settings
from pipeline.transport.kafka import KafkaConfig

T = TypeVar("T")

PolicyOption = Annotated[
    str | None, typer.Option("--policy", "-p", help="Shipped pack name or YAML file.")
]
SchoolsOption = Annotated[
    str | None,
    typer.Option(
        "--schools",
        help="The register of schools (YAML): each school's events decided by its own pack "
        "(else SHARING_AUDIT_SCHOOLS; without one, --policy decides every event).",
    ),
]
SchoolOption = Annotated[
    str | None,
    typer.Option(help="One school's part (its URN); else every school's together."),
]


def school_scope(school: str | None, register: Schools | None = None) -> tuple[str, ...] | None:
    """``--school`` as a reader's scope, or a clear exit for what is not a URN (or, given
    the register, not one of its schools)."""
    if school is None:
        return None
    if not (len(school) == 6 and school.isdigit()):
        fail(f"--school {school!r}: a school is named by its URN, six digits")
    if register is not None and school not in register.names:
        fail(f"--school {school}: not a school of the register of schools")
    return (school,)


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (else SHARING_AUDIT_DATABASE_URL, else sqlite:///sharing-audit.db).",
    ),
]


def database_url(db: str | None) -> str:
    return db or settings().database_url


def open_ledger(db: str | None, create: bool = True) -> Ledger:
    """The ledger at ``db``, its schema created if the database is empty (see
    :func:`schema.prepare`)."""
    url = database_url(db)
    try:
        ledger = Ledger.open(url)
        schema.prepare(ledger.engine, create)
    except schema.SchemaNotReady as exc:
        fail(f"{shown_url(url)} {exc}")
    except NotADatabase:
        fail(f"not a database URL: {shown_url(url)}")
    except LedgerError as exc:
        fail(f"cannot open the ledger at {shown_url(url)}: {exc}")
    return ledger


def pseudonym_key_for(db: str | None, wait_for_database: bool = False) -> bytes:
    """The pseudonym key for the ledger at ``db``, checked against the key the ledger was
    written with (see :mod:`pipeline.ledger.keys`), or a clear exit.

    ``wait_for_database``, for a worker, which waits out a database that is down: the key
    is then taken as configured, and checked by the writer before its first write.
    """
    url = database_url(db)
    try:
        return ledger_key(Ledger.open(url), settings().pseudonym_key, url)
    except (PseudonymKeyError, KeyRefused) as exc:
        fail(str(exc))
    except LedgerError as exc:
        if not wait_for_database:
            fail(f"cannot open the ledger at {shown_url(url)}: {exc}")
    try:
        return load_or_create_key(settings().pseudonym_key, url, may_create=False)
    except PseudonymKeyError as exc:
        fail(str(exc))


def pseudonym_for(db: str | None) -> Pseudonymiser:
    return pseudonymiser(pseudonym_key_for(db))


@contextmanager
def reading(ledger: Ledger) -> Iterator[Any]:
    try:
        with ledger.engine.connect() as connection:
            yield connection
    except LedgerError as exc:
        fail(f"cannot read the ledger: {exc}")


BrokerOption = Annotated[
    str | None,
    typer.Option("--broker", help="Kafka bootstrap HOST:PORT (else SHARING_AUDIT_BROKER)."),
]


def broker_config(broker: str | None) -> KafkaConfig:
    """The Kafka connection named on the command line or in the settings, or a clear exit."""
    try:
        return settings().kafka(broker)
    except ValueError:
        fail(
            "no broker: give --broker HOST:PORT or set SHARING_AUDIT_BROKER "
            "(sharing-audit up and sharing-audit broker print the address)"
        )


def cli_reader() -> Requester:
    """Whoever runs a read at the command line: the operating-system user, who has the
    database itself in hand."""
    return Requester(getpass.getuser(), "database", "cli")


def asked(make: Callable[[], T]) -> T:
    """``make()``, or a clear exit naming the filter it could not use."""
    try:
        return make()
    except BadFilter as exc:
        fail(str(exc))
