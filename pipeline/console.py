"""How the command line ends on a predictable mistake: one line, no traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

#: Exit status when a file, pack or database cannot be read.
EXIT_UNREADABLE = 2


def fail(message: str, code: int = EXIT_UNREADABLE) -> NoReturn:
    """One line on standard error, then exit with ``code``."""
    print(f"sharing-audit: {message}", file=sys.stderr)
    raise typer.Exit(code)
