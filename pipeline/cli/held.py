"""Reading the receipts a school holds, from files it may not have written itself.

A receipts file (``emit --receipts``, ``watch``'s ``done/NAME.receipts.jsonl``) is JSON
Lines, one object per line sent; a bare signed note is one receipt. A folder is searched
for ``*.receipts.jsonl`` without following symbolic links, and every file is opened
without following one, taken only if it is a regular file (a FIFO would hang the read),
and read a bounded line at a time: a receipts folder is as hostile as any other input.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.transparency.completeness import MAX_LINE, held_in_line
from pipeline.transparency.delivery import ReceiptRefused

RECEIPTS_SUFFIX = ".receipts.jsonl"


class Unreadable(Exception):
    """A file that is not read: the message says why."""


@dataclass(frozen=True, slots=True)
class Held:
    """One receipt as held (``note``, verbatim), where (``FILE:LINE``), and the event its
    line sent; or why there is none to check (``refused``: a line that is not a receipt;
    ``unreadable``: a file or folder that could not be read)."""

    where: str
    note: bytes | None = None
    event_id: str | None = None
    refused: str | None = None
    unreadable: str | None = None


def held_receipts(paths: list[Path]) -> Iterator[Held]:
    """Every receipt in ``paths`` (files, or folders searched for receipts files). A folder
    holding no receipts file is said, not passed over: ``emit --receipts`` takes any name,
    and an audit that checked nothing must not read as a clean one."""
    for path in paths:
        if path.is_symlink():
            yield Held(str(path), unreadable="a symbolic link, not followed")
        elif path.is_dir():
            found = False
            for held in _in_folder(path):
                found = True
                yield held
            if not found:
                yield Held(
                    str(path),
                    unreadable=f"holds no file named *{RECEIPTS_SUFFIX}: "
                    "name a receipts file to check it, whatever its name",
                )
        else:
            yield from _in_file(path)


def files_named(folder: Path, suffix: str = RECEIPTS_SUFFIX) -> Iterator[Path | Held]:
    """The files in ``folder`` (and below) whose names end in ``suffix``, sorted; a symbolic
    link or a folder that cannot be read as a :class:`Held` saying so (none is followed)."""

    def unreadable(error: OSError) -> None:
        raise error

    try:
        for root, folders, files in os.walk(folder, onerror=unreadable, followlinks=False):
            folders.sort()
            for name in folders:
                if (Path(root) / name).is_symlink():
                    yield Held(str(Path(root) / name), unreadable="a symbolic link, not followed")
            yield from (Path(root) / name for name in sorted(files) if name.endswith(suffix))
    except OSError as exc:
        yield Held(str(exc.filename or folder), unreadable=f"cannot read it: {exc.strerror}")


def _in_folder(folder: Path) -> Iterator[Held]:
    for found in files_named(folder):
        yield from _in_file(found) if isinstance(found, Path) else (found,)


@contextmanager
def regular_file(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading, not through a symbolic link and only if it is a regular
    file (a FIFO would hang the read); else :class:`Unreadable` saying why."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        link = path.is_symlink()
        raise Unreadable(
            "a symbolic link, not followed" if link else f"cannot read it: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("not a regular file")
        yield stream


def bounded_lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """Each line's number and bytes (without its newline), or None for one longer than
    ``limit``, read a bounded piece at a time; blank lines are left out."""
    number = 0
    while line := stream.readline(limit + 1):
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            while (chunk := stream.readline(limit)) and not chunk.endswith(b"\n"):
                pass
            yield number, None
        elif line.strip():
            yield number, line.rstrip(b"\n")


def _in_file(path: Path) -> Iterator[Held]:
    try:
        with regular_file(path) as stream:
            if not path.name.endswith(".jsonl"):
                yield _bare_note(path, stream)
                return
            for number, line in bounded_lines(stream, MAX_LINE):
                yield _held(f"{path}:{number}", line)
    except Unreadable as exc:
        yield Held(str(path), unreadable=str(exc))


def _held(where: str, line: bytes | None) -> Held:
    if line is None:
        return Held(where, refused=f"the line is longer than {MAX_LINE // 1024} KiB")
    try:
        event_id, note = held_in_line(line)
    except ReceiptRefused as exc:
        return Held(where, refused=str(exc))
    return Held(where, note=note, event_id=event_id)


def _bare_note(path: Path, stream: BinaryIO) -> Held:
    data = stream.read(MAX_LINE + 1)
    if len(data) > MAX_LINE:
        return Held(str(path), refused=f"the file is longer than {MAX_LINE // 1024} KiB")
    return Held(str(path), note=data)
