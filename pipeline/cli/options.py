"""What the commands share: the options for the ledger, the policy pack and the broker,
and opening what they name, or a clear exit."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NamedTuple, TypeVar

import typer

from pipeline.cli.exits import fail, policy_or_fail, schools_or_fail
from pipeline.cli.keys import log_key
from pipeline.cli.runnable import command_line
from pipeline.keyfiles import key_file_for
from pipeline.ledger.log.checkpoints import LOG_KEY_SUFFIX, LogKeyError, log_signer
from pipeline.ledger.log.origin import LogOriginError, log_origin
from pipeline.ledger.reading.asking import BadFilter, instant
from pipeline.ledger.reading.reads import Requester
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.errors import LedgerError, NotADatabase
from pipeline.ledger.storage.store import Ledger, shown_url
from pipeline.ledger.writing.adoption import PacksInForce
from pipeline.ledger.writing.keys import KeyRefused, ledger_key
from pipeline.ledger.writing.pupils import finder
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Schools
from pipeline.pseudonym import Pseudonymiser, PseudonymKeyError, load_or_create_key, pseudonymiser
from pipeline.settings import DEFAULT_DATABASE_URL, settings
from pipeline.transparency.note import Verifier
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


#: The setting every command that takes --db falls back on (check alone does not: it
#: writes to a ledger only when given one, and says so when this is set).
DATABASE_SETTING = "SHARING_AUDIT_DATABASE_URL"
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help=f"Database URL (else {DATABASE_SETTING}, else {DEFAULT_DATABASE_URL}).",
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


def in_force(
    ledger: Ledger, policy: Policy, schools: Schools | None
) -> tuple[Policy, Schools | None]:
    """The configured pack and register as the ledger's adoptions have replaced them: the
    packs that decide now (``policy adopt``), which the commands that explain entries,
    count retention or write the notice go by, as the worker and the desk do."""
    with ledger.engine.connect() as connection:
        return PacksInForce(policy, schools).current(connection)


class PeriodReport(NamedTuple):
    """What a report over a period reads."""

    register: Schools | None
    policy: Policy
    since: str | None
    until: str | None
    ledger: Ledger


def period_report(
    db: str | None,
    policy: str | None,
    schools: str | None,
    school: str | None,
    since: str | None,
    until: str | None,
    adopted: bool = True,
) -> PeriodReport:
    """The register (``--school`` checked against it), the pack, the period as the ledger's
    UTC text and the ledger, each or a clear exit in that order; with ``adopted``, the pack
    and register as the ledger's adoptions have replaced them (what-if compares a
    candidate with the configured pack, and follows the adoptions itself)."""
    register = schools_or_fail(schools)
    school_scope(school, register)
    pack = policy_or_fail(policy)
    start = asked(lambda: instant(since, "--since")) if since else None
    end = asked(lambda: instant(until, "--until")) if until else None
    ledger = open_ledger(db, create=False)
    if adopted:
        pack, register = in_force(ledger, pack, register)
    return PeriodReport(register, pack, start, end, ledger)


def pseudonym_key_for(db: str | None, wait_for_database: bool = False) -> bytes:
    """The pseudonym key for the ledger at ``db``, checked against the key the ledger was
    written with (see :mod:`pipeline.ledger.writing.keys`), or a clear exit.

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


def pupil_finder(db: str | None) -> Callable[[str], str]:
    """A UPN to the pseudonym its pupil is recorded under (see
    :mod:`pipeline.ledger.writing.pupils`), once the key is known to be the ledger's: a ledger
    opened on another key is refused, never searched and found empty."""
    pseudonym_key_for(db)
    return finder(open_ledger(db, create=False))


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
            f"({command_line('up')} and {command_line('broker')} print the address)"
        )


VkeyOption = Annotated[
    str | None,
    typer.Option(
        "--vkey",
        metavar="KEY|FILE",
        help="The log's verifier key (the line sharing-audit log vkey prints), or a file "
        "holding it, to check its receipts by (else SHARING_AUDIT_LOG_VKEY, else the key of "
        "the ledger --db names, when it is on this machine).",
    ),
]


def log_verifier_for(vkey: str | None, db: str | None) -> Verifier | None:
    """The log's verifier key: from ``--vkey`` (the key or a file holding it), else
    SHARING_AUDIT_LOG_VKEY (alike), else the key of the local ledger as ``sharing-audit log
    vkey`` finds it (never made here); None when there is none to be had. A key given that
    is not one is a clear exit."""
    if vkey is not None:
        return log_key(vkey, "--vkey")
    config = settings()
    if config.log_vkey:
        return log_key(config.log_vkey, "SHARING_AUDIT_LOG_VKEY")
    url = database_url(db)
    kept = key_file_for(url, LOG_KEY_SUFFIX)
    if not config.log_key and (kept is None or not kept.exists()):
        return None  # asked before the origin, whose read would make an empty SQLite file
    try:
        return log_signer(config.log_key, log_origin(url, config.log_origin), url, False).verifier
    except LogOriginError as exc:
        fail(str(exc))
    except LogKeyError as exc:
        if config.log_key:  # a key set that is not one is said, not taken for none
            fail(str(exc))
        return None


def log_verifier_or_fail(vkey: str | None, db: str | None, acked: str) -> Verifier:
    """:func:`log_verifier_for`, or a clear exit saying where the key is found and what
    ``--wait acked`` would do instead (``acked``): a sender never waits on receipts it
    cannot check."""
    log = log_verifier_for(vkey, db)
    if log is None:
        fail(
            "cannot check the log's receipts: no verifier key for it (give --vkey KEY|FILE or "
            f"set SHARING_AUDIT_LOG_VKEY; {command_line('log', 'vkey')} prints it where the "
            f"ledger is). --wait acked {acked}, but then only promises that the broker took them."
        )
    return log


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
