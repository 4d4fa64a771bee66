"""Commands the command line prints for a person to run next, written as they can run them
from the shell that started it: ``make demo`` runs ``.venv/bin/sharing-audit``, which is
on no one's PATH until the environment is activated, so a bare ``sharing-audit serve``
would answer "command not found" there, or start another installation's program."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

PROGRAM = "sharing-audit"


def program(path: str | None = None, cwd: Path | None = None) -> str:
    """This program as the shell can run it: its bare name when that name on ``path`` (the
    PATH, by default) is this very program; else the path of the executable installed
    beside this interpreter, relative to the working folder when it is under it
    (``.venv/bin/sharing-audit``), absolute otherwise; else the interpreter running
    ``-m pipeline.cli``, for a checkout with no scripts installed."""
    ours = Path(sys.executable).parent.resolve() / PROGRAM
    if not ours.is_file():
        return f"{shlex.quote(sys.executable)} -m pipeline.cli"
    found = shutil.which(PROGRAM, path=os.environ.get("PATH") if path is None else path)
    if found is not None and os.path.samefile(found, ours):
        return PROGRAM
    return _from_here(ours, cwd)


def _from_here(path: Path, cwd: Path | None = None) -> str:
    """``path`` as the shell names it from the working folder: relative when under it
    (``./NAME`` in it: a bare name would be looked for on the PATH)."""
    here = (cwd or Path.cwd()).resolve()
    if not path.is_relative_to(here):
        return shlex.quote(str(path))
    relative = str(path.relative_to(here))
    return shlex.quote(relative if "/" in relative else f"./{relative}")


def command_line(*args: str) -> str:
    """``sharing-audit ARGS...`` as a person can paste it into the shell that started this
    program, each argument quoted where the shell would otherwise split or expand it."""
    return " ".join([program(), *(shlex.quote(arg) for arg in args)])


def activation() -> str | None:
    """How to put this program on the PATH of the shell that started it
    (``source .venv/bin/activate``), when it is not there and it runs from an environment
    that can be activated; None otherwise."""
    script = Path(sys.executable).parent.resolve() / "activate"
    if program() == PROGRAM or not script.is_file():
        return None
    return f"source {_from_here(script)}"
