"""Verifier keys given on the command line: the key's one line itself (as ``sharing-audit
log vkey`` prints it) or a file holding it, alike for every option that takes one, so that
no one has to remember which option wants which."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.cli.exits import fail
from pipeline.shown import shown_text
from pipeline.transparency.note import NoteError, Verifier, witness_verifier
from pipeline.transport.mis import NoLogKey, log_verifier

#: How long a value given is shown in a message before it is cut short.
SHOWN = 60


def log_key(given: str, option: str) -> Verifier:
    """The log's verifier key given to ``option`` (``--vkey``): its text or a file holding
    it, and a log's key (Ed25519), not a witness's; else a clear exit naming the option."""
    return _given(given, option, log_verifier, NoLogKey)


def witness_key(given: str, option: str) -> Verifier:
    """A witness's verifier key given to ``option`` (``--witness``): its text or a file
    holding it, and a witness's (a cosignature key), not a log's; else a clear exit
    naming the option."""
    return _given(given, option, witness_verifier, NoteError)


def _given(
    given: str,
    option: str,
    parse: Callable[[str], Verifier],
    refused: type[Exception],
) -> Verifier:
    """``given`` parsed as a key when it is one (of any kind: then ``parse`` says whether
    it is the kind wanted); else the file it names, read and parsed. The key's text is
    tried first: no verifier key (``NAME+ID+KEY``) is a file name anyone keeps."""
    try:
        Verifier.parse(given)
    except NoteError as not_a_key:
        return _from_file(given, option, parse, refused, str(not_a_key))
    try:
        return parse(given)
    except refused as exc:
        fail(f"{option}: {exc}")


def _from_file(
    given: str,
    option: str,
    parse: Callable[[str], Verifier],
    refused: type[Exception],
    why: str,
) -> Verifier:
    path = Path(given)
    if not path.is_file():
        shown = shown_text(given if len(given) <= SHOWN else given[: SHOWN - 1] + "…")
        fail(f"{option} {shown}: not a file, nor a verifier key itself ({why})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {option} {shown_text(path)}: {getattr(exc, 'strerror', None) or exc}")
    try:
        return parse(text)
    except refused as exc:
        fail(f"{option} {shown_text(path)}: {exc}")
