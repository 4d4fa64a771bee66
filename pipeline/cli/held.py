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
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.transparency.completeness import MAX_LINE, held_in_line
from pipeline.transparency.delivery import ReceiptRefused

RECEIPTS_SUFFIX = ".receipts.jsonl"


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
    """Every receipt in ``paths`` (files, or folders searched for receipts files)."""
    for path in paths:
        if path.is_symlink():
            yield Held(str(path), unreadable="a symbolic link, not followed")
        elif path.is_dir():
            yield from _in_folder(path)
        else:
            yield from _in_file(path)


def _in_folder(folder: Path) -> Iterator[Held]:
    def unreadable(error: OSError) -> None:
        raise error

    try:
        for root, folders, files in os.walk(folder, onerror=unreadable, followlinks=False):
            folders.sort()
            for name in folders:
                if (Path(root) / name).is_symlink():
                    yield Held(str(Path(root) / name), unreadable="a symbolic link, not followed")
            for name in sorted(files):
                if name.endswith(RECEIPTS_SUFFIX):
                    yield from _in_file(Path(root) / name)
    except OSError as exc:
        yield Held(str(exc.filename or folder), unreadable=f"cannot read it: {exc.strerror}")


def _in_file(path: Path) -> Iterator[Held]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        why = (
            "a symbolic link, not followed"
            if path.is_symlink()
            else f"cannot read it: {exc.strerror}"
        )
        yield Held(str(path), unreadable=why)
        return
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            yield Held(str(path), unreadable="not a regular file")
        elif path.name.endswith(".jsonl"):
            yield from _lines(path, stream)
        else:
            yield _bare_note(path, stream)


def _lines(path: Path, stream: BinaryIO) -> Iterator[Held]:
    number = 0
    while line := stream.readline(MAX_LINE + 1):
        number += 1
        where = f"{path}:{number}"
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            _skip_rest_of_line(stream)
            yield Held(where, refused=f"the line is longer than {MAX_LINE // 1024} KiB")
            continue
        if not line.strip():
            continue
        try:
            event_id, note = held_in_line(line.rstrip(b"\n"))
        except ReceiptRefused as exc:
            yield Held(where, refused=str(exc))
            continue
        yield Held(where, note=note, event_id=event_id)


def _skip_rest_of_line(stream: BinaryIO) -> None:
    while (chunk := stream.readline(MAX_LINE)) and not chunk.endswith(b"\n"):
        pass


def _bare_note(path: Path, stream: BinaryIO) -> Held:
    data = stream.read(MAX_LINE + 1)
    if len(data) > MAX_LINE:
        return Held(str(path), refused=f"the file is longer than {MAX_LINE // 1024} KiB")
    return Held(str(path), note=data)
