"""The log's origin: the name its checkpoints carry and its verifier key is known by.

C2SP tlog-tiles recommends the URL prefix the log is served under (without the scheme),
so the default is the host's name and ``/log``, where ``serve`` serves the checkpoint and
tiles. The default used to be ``sharing-audit.localhost/ledger``: a log that signed
checkpoints under it, or under any other name, goes on signing under that name. A new
name would be a new log beside the old one: its checkpoints would not open under the
verifier key auditors and witnesses hold, and nothing would link the two histories.
"""

from __future__ import annotations

from sqlalchemy import Connection, inspect, select

from pipeline.ledger.log.checkpoints import CHECKPOINT
from pipeline.ledger.storage.errors import LedgerError
from pipeline.ledger.storage.store import make_engine
from pipeline.settings import DEFAULT_LOG_ORIGIN


class LogOriginError(Exception):
    """The origin set is not the one the log's checkpoints are signed under, or the
    ledger cannot be read to learn it; the message says which and what to do."""


def recorded_origin(connection: Connection) -> str | None:
    """The origin of the latest checkpoint the log signed (the first line of its note),
    None if it has signed none."""
    if not inspect(connection).has_table(CHECKPOINT.name):
        return None
    note = connection.execute(
        select(CHECKPOINT.c.note).order_by(CHECKPOINT.c.size.desc()).limit(1)
    ).scalar()
    return None if note is None else str(note).split("\n", 1)[0]


def log_origin(database_url: str, configured: str | None) -> str:
    """The origin the log at ``database_url`` signs under: the one its checkpoints carry,
    else ``configured`` (SHARING_AUDIT_LOG_ORIGIN), else :data:`DEFAULT_LOG_ORIGIN`;
    :class:`LogOriginError` when ``configured`` is not the one its checkpoints carry."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            recorded = recorded_origin(connection)
    except LedgerError as exc:
        raise LogOriginError(f"cannot read the log's checkpoints for its origin: {exc}") from None
    finally:
        engine.dispose()
    if not configured or configured == recorded:  # unset (or empty, as compose leaves it)
        return recorded or DEFAULT_LOG_ORIGIN
    if recorded is None:
        return configured
    raise LogOriginError(
        f"SHARING_AUDIT_LOG_ORIGIN is {configured!r}, but this log's checkpoints are signed "
        f"as {recorded!r}: a new origin would start another log its auditors and witnesses "
        f"cannot follow. Set it to {recorded!r} (or leave it unset)."
    )
