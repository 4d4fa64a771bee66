"""The ledger's own errors: what a database failure means for whoever called the ledger.

Driver and SQLAlchemy errors are translated here, at the ledger's edge, as they happen
(:func:`translate_driver_errors` hooks every engine the ledger makes), so nothing above
the ledger (the agents, the API, the command line) knows which database or driver is
underneath, and each of them decides on one question: wait and retry, or give up.
The driver's error stays attached as ``__cause__`` for the logs of a maintainer.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError


class LedgerError(Exception):
    """The database refused or failed an operation. The message is the database's own
    first line, safe to show: the ledger's statements carry pupils only as pseudonyms."""


class LedgerUnavailable(LedgerError):
    """The database cannot be reached now (down, restarting, locked, connection lost):
    wait and retry."""


class LedgerBusy(LedgerUnavailable):
    """Every connection of the pool stayed in use for the pool's whole wait."""


class LedgerRefused(LedgerError):
    """The database refused a change: a row that must be unique, or a table that is
    append-only."""


class NotADatabase(LedgerError):
    """What was given as the ledger's address is not a database URL."""


def first_line(exc: BaseException) -> str:
    """The driver's own first line of a database error, for a one-line message."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


#: SQLite's primary result codes that mean "not now" rather than "never": busy or locked
#: by another writer, a file that cannot be opened or read now, a full disk.
_SQLITE_NOT_NOW = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_PROTOCOL,
    }
)


def _unavailable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    # The sqlite3 module raises OperationalError for a missing column too: a mistake that
    # waiting does not mend. Its result code tells the two apart.
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is None or code & 0xFF in _SQLITE_NOT_NOW


def ledger_error(exc: DBAPIError) -> LedgerError:
    """``exc`` in the ledger's words."""
    message = first_line(exc)
    if _unavailable(exc):
        return LedgerUnavailable(message)
    if isinstance(exc, IntegrityError):
        return LedgerRefused(message)
    return LedgerError(message)


def translate_driver_errors(engine: Engine) -> None:
    """Make every database error raised through ``engine`` a :class:`LedgerError`.

    A failed pre-ping is left to the pool, which reconnects on it rather than fail.
    """

    @event.listens_for(engine, "handle_error", retval=True)
    def _translate(context: Any) -> BaseException | None:
        if context.is_pre_ping or not isinstance(context.sqlalchemy_exception, DBAPIError):
            return None
        error = context.sqlalchemy_exception
        if context.is_disconnect:
            error.connection_invalidated = True
        return ledger_error(error)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached now (so: wait and retry)."""
    return isinstance(exc, LedgerUnavailable)
