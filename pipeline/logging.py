"""Logging: structlog key-value events, JSON off a terminal, pupil identifiers redacted.

One configuration serves structlog and the standard library, so library loggers (kafka
clients, Faust, SQLAlchemy) come out in the same format and through the same redaction.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import unquote_plus

import structlog

SENSITIVE_KEYS = frozenset(
    {"upn", "upns", "dob", "date_of_birth", "name", "first_name", "last_name", "pupils"}
)
REDACTED = "[redacted]"
# A letter, eleven digits and a digit or letter, in either case, each character perhaps
# set apart by a space, "+" or "-" (as a person types it, or a form encodes it), and not
# inside a longer word: looser than a UPN, since a false alarm costs nothing.
_UPN_LIKE = re.compile(
    r"(?<![0-9A-Za-z])[A-Za-z](?:[\s+-]?[0-9]){11}[\s+-]?[0-9A-Za-z](?![0-9A-Za-z])"
)


def redacted_text(text: str) -> str:
    """``text`` with anything UPN-like redacted, looked for after URL-decoding too (once
    and twice), since a query string reaches the access log encoded."""
    if "%" in text or "+" in text:
        decoded = unquote_plus(unquote_plus(text))
        if _UPN_LIKE.search(decoded):
            return _UPN_LIKE.sub(REDACTED, decoded)
    return _UPN_LIKE.sub(REDACTED, text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redacted_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if k in SENSITIVE_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact_pupil_identifiers(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace pupil identifiers at any depth: by key (``upn``, ``dob``, ...) and any
    UPN-shaped text, so that even a message built by mistake from an event cannot leak."""
    for key, value in list(event_dict.items()):
        event_dict[key] = REDACTED if key in SENSITIVE_KEYS else _scrub(value)
    return event_dict


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    redact_pupil_identifiers,
]


#: The Kafka client library the commands use: its records name sockets and selectors.
KAFKA_CLIENT = "kafka"


def configure(level: str = "INFO", json: bool | None = None, quiet_clients: bool = False) -> None:
    """Set up structlog and the standard library's logging once, for the whole process.

    ``quiet_clients``: for a person at the command line, kafka-python's own records (a
    connection refused a hundred times a second while a broker is down, or its internal
    tracebacks as a connection closes) are left out below CRITICAL: each command says in
    its own words when a broker cannot be reached. The worker and its writer, whose logs
    an operator reads, configure again without it and keep them."""
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            # A library's traceback is written out, then redacted like any other text.
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_pupil_identifiers,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger(KAFKA_CLIENT).setLevel(logging.CRITICAL if quiet_clients else logging.NOTSET)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
