"""How the command line ends on a predictable mistake: one line, no traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, NoReturn

import typer

from pipeline.packs import load_pack, load_schools
from pipeline.policy.pack import PackError, Policy
from pipeline.policy.schools import Controller, Schools
from pipeline.settings import settings

#: Exit status when a file, pack or database cannot be read.
EXIT_UNREADABLE = 2


def fail(message: str, code: int = EXIT_UNREADABLE) -> NoReturn:
    """One line on standard error, then exit with ``code``."""
    print(f"sharing-audit: {message}", file=sys.stderr)
    raise typer.Exit(code)


def open_events(file: str) -> tuple[IO[bytes], int | None]:
    """A JSON Lines file, or standard input for ``-``, and its size when known; or a
    clear exit naming what cannot be read."""
    if file == "-":
        return sys.stdin.buffer, None
    path = Path(file)
    try:
        if path.is_dir():
            fail(f"cannot read {file}: it is a directory")
        stream = path.open("rb")
        return stream, path.stat().st_size
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")


def schools_or_fail(path: str | None) -> Schools | None:
    """The register of schools named on the command line, else SHARING_AUDIT_SCHOOLS, each
    school's pack compiled; None without one."""
    path = path or settings().schools
    if not path:
        return None
    try:
        return load_schools(path)
    except PackError as exc:
        fail(f"{exc.source}: " + "; ".join(exc.problems))


def school_or_fail() -> Controller | None:
    """The deployment's one school as its settings give it (SHARING_AUDIT_SCHOOL_NAME,
    ..._ADDRESS, ..._DPO_CONTACT), for subject-access reports; None when none is set."""
    try:
        return settings().school()
    except PackError as exc:
        fail(f"{exc.source}: " + "; ".join(exc.problems))


def policy_or_fail(ref: str | None) -> Policy:
    """The pack named on the command line, else SHARING_AUDIT_POLICY, else the default."""
    try:
        return load_pack(ref or settings().policy)
    except PackError as exc:
        fail(f"policy pack {exc.source}: " + "; ".join(exc.problems))
