"""A folder an MIS exports into, watched: each new file, once complete, is read, its events
sent and acknowledged, then the file moved to ``done/``; a file that cannot be read goes
to ``rejected/`` beside a ``.why`` text saying why.

Nothing is skipped and nothing is lost across a crash. A file is moved into ``.sending/``
before its events are sent and out of it once they are acknowledged; at start, what is
in ``.sending/`` is sent again (its events carry the same ids, so the ledger records
them once) and what arrived in the folder while the watcher was down is read like any
new file. A file counts as complete once it has not changed for ``settle`` seconds; an
MIS that writes to a temporary name and renames it (``.tmp``, ``.part``, or a name
starting with a dot) is read as soon as it is renamed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.files.events import Converted
from pipeline.files.safe_xml import FileRefused
from pipeline.logging import get_logger

DONE, REJECTED, SENDING = "done", "rejected", ".sending"
#: Names an exporter gives a file it is still writing.
UNFINISHED = (".tmp", ".part", ".partial", ".filepart", ".crdownload", "~")
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one file: ``done`` (with its events' count) or ``rejected`` (with
    why); ``waiting`` if it could not be sent yet (the broker did not acknowledge)."""

    file: str
    status: str
    events: int = 0
    why: str = ""


class FolderWatcher:
    """One MIS export folder. ``convert`` reads a file's events (raising
    :class:`FileRefused`); ``send`` delivers records and returns once each is
    acknowledged (raising any exception if not)."""

    def __init__(
        self,
        folder: Path,
        convert: Callable[[Path], Converted],
        send: Callable[[list[bytes]], None],
        settle: float = 5.0,
        told: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.folder = folder
        self.convert = convert
        self.send = send
        self.settle = settle
        self.told = told
        for name in (DONE, REJECTED, SENDING):
            (folder / name).mkdir(parents=True, exist_ok=True)

    def ready(self, now: float | None = None) -> list[Path]:
        """Files to read now: those left in ``.sending/`` by a run that stopped, then the
        folder's complete files, oldest first."""
        now = time.time() if now is None else now
        interrupted = sorted(p for p in (self.folder / SENDING).iterdir() if p.is_file())
        waiting = []
        for path in self.folder.iterdir():
            if not path.is_file() or path.name.startswith(".") or path.name.endswith(UNFINISHED):
                continue
            stat = path.stat()
            if now - stat.st_mtime >= self.settle:
                waiting.append((stat.st_mtime, path.name, path))
        return interrupted + [path for _, _, path in sorted(waiting)]

    def poll(self) -> list[Outcome]:
        """Read and send every file ready now; what became of each."""
        return [self.handle(path) for path in self.ready()]

    def handle(self, path: Path) -> Outcome:
        """One file: read, moved to ``.sending/``, sent, moved to ``done/``; or rejected."""
        try:
            converted = self.convert(path)
        except FileRefused as refused:
            return self._reject(path, str(refused))
        for note in converted.notes:
            self.told(note)
        sending = path if path.parent.name == SENDING else _move(path, self.folder / SENDING)
        records = [orjson.dumps(event) for event in converted.events]
        try:
            self.send(records)
        except Exception as exc:  # the broker's fault, not the file's: it waits, unsent
            log.warning("file_not_sent", file=path.name, why=f"{type(exc).__name__}: {exc}")
            return Outcome(path.name, "waiting", len(records), f"not acknowledged: {exc}")
        _move(sending, self.folder / DONE)
        log.info("file_sent", file=path.name, events=len(records))
        return Outcome(path.name, "done", len(records))

    def _reject(self, path: Path, why: str) -> Outcome:
        # The reason first, then the file: a crash between leaves the file to be
        # rejected again under the same name, never a rejected file without its reason.
        target = _free_name(path, self.folder / REJECTED)
        target.with_name(target.name + ".why").write_text(why + "\n", encoding="utf-8")
        os.replace(path, target)
        log.warning("file_rejected", file=path.name, why=why)
        return Outcome(path.name, "rejected", why=why)


def _free_name(path: Path, into: Path) -> Path:
    """A name in the folder ``into`` that no file there has yet: an MIS reuses names, and
    nothing is overwritten."""
    target = into / path.name
    n = 1
    while target.exists():
        n += 1
        target = into / f"{path.stem}.{n}{path.suffix}"
    return target


def _move(path: Path, into: Path) -> Path:
    """``path`` renamed into the folder ``into`` (same file system, so atomic)."""
    target = _free_name(path, into)
    os.replace(path, target)
    return target
