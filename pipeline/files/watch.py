"""A folder an MIS exports into, watched: each new file, once complete, is read, its events
sent, and the file moved to ``done/`` once the log has signed a receipt for every one of
them, the receipts beside it (``done/NAME.receipts.jsonl``, as ``emit --receipts`` keeps
them: ``{"line": N, "event_id": ..., "receipt": "<the signed note>"}``, N the event's
position in the file); a file that cannot be read goes to ``rejected/`` beside a ``.why``
text saying why. (Waiting for the broker's acknowledgements alone files no receipts.)

Nothing is skipped and nothing is lost across a crash. A file is moved into ``.sending/``
before it is read (what is read is what was taken, whatever the MIS writes meanwhile) and
out of it once its events hold their receipts or it is rejected. Receipts are appended to
``.sending/NAME.receipts.jsonl`` as they come; a file some of whose events got none in time
stays in ``.sending/`` and is tried again at the next poll, sending only those. At start,
what is in ``.sending/`` is sent again in the same way (its events carry the same ids, so
the ledger records them once; the receipts kept are checked again under the log's key) and
what arrived in the folder while the watcher was down is read like any new file. A file
counts as complete once it has not changed for ``settle`` seconds; an MIS that writes to a
temporary name and renames it (``.tmp``, ``.part``, or a name starting with a dot) is read
as soon as it is renamed. Only names matching the watcher's pattern (``*.xml`` unless told
otherwise, in any case: an MIS on Windows writes ``.XML``) are exports; anything else in the
folder (a stray ``notes.txt``, a README) is left where it is, untouched. A file named as a
receipts file is not an export: it is rejected unread, never taken for another's receipts.

The folder is hostile ground: anything in it named as an export that is not a regular file
(a symbolic link, a folder, a FIFO) is rejected unopened, saying only what it is; a file the
reader cannot read, for whatever reason, is rejected and the watcher goes on; a reason's
control characters are escaped, as it is read at a terminal.

What becomes of each file is the watcher's :class:`Outcome`, which its caller reports; its
own log records of the same are at INFO, so that a person at a terminal is told once.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from pipeline.files.events import Converted
from pipeline.files.safe_xml import FileRefused
from pipeline.logging import get_logger
from pipeline.plural import counted
from pipeline.shown import shown_text

DONE, REJECTED, SENDING = "done", "rejected", ".sending"
#: What a file's receipts are named by, beside it: ``NAME`` + this.
RECEIPTS = ".receipts.jsonl"
#: Names an exporter gives a file it is still writing.
UNFINISHED = (".tmp", ".part", ".partial", ".filepart", ".crdownload", "~")
#: The names a watcher takes for exports unless told otherwise: the CTF and the census
#: return are XML.
EXPORTS = "*.xml"
log = get_logger(__name__)
#: Sends a file's events (their JSON, in the file's order) and keeps the log's receipt of
#: each in the receipts file given, as they come, sending only the events that hold none
#: there yet; given None, it waits for the broker's acknowledgements alone. It returns the
#: events still without a receipt (by line, 1-based, and why): none means all are held.
#: It raises when the broker cannot be reached.
Send = Callable[[list[bytes], Path | None], Mapping[int, str]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one file: ``done`` (with its events' count) or ``rejected`` (with
    why); ``waiting`` if it could not be sent yet (the broker did not acknowledge, or the
    log's receipt of some event did not come) or not taken into ``.sending/``."""

    file: str
    status: str
    events: int = 0
    why: str = ""


class NotAFile(Exception):
    """What was taken from the folder is not a regular file (a link, a folder, a FIFO...):
    it is not opened, and its reason says only what kind of thing it is."""


class FolderWatcher:
    """One MIS export folder. ``convert`` reads a file's events from the stream it is
    given, naming it as told (raising :class:`FileRefused`); ``send`` delivers them
    (:data:`Send`), keeping their receipts unless ``receipts`` is False (then a file is
    done once the broker acknowledged its events, and no receipts are filed). Only names
    that match ``pattern`` (a shell pattern, in any case) are taken."""

    def __init__(
        self,
        folder: Path,
        convert: Callable[[IO[bytes], str], Converted],
        send: Send,
        settle: float = 5.0,
        told: Callable[[str], None] = lambda _: None,
        receipts: bool = True,
        pattern: str = EXPORTS,
    ) -> None:
        self.folder = folder
        self.pattern = pattern.lower()
        self.convert = convert
        self.send = send
        self.settle = settle
        self.told = told
        self.receipts = receipts
        self._own = {name: _own_folder(folder / name) for name in (DONE, REJECTED, SENDING)}

    def exports(self, name: str) -> bool:
        """Whether ``name`` is one the watcher takes: it matches the pattern, in any case."""
        return fnmatch.fnmatchcase(name.lower(), self.pattern)

    def ready(self, now: float | None = None) -> list[Path]:
        """What to read now: whatever a run that stopped left in ``.sending/``, then
        what in the folder has settled, oldest first, of the names the pattern matches
        (anything so named, not only files: what is not a file is rejected saying so,
        rather than left unseen)."""
        now = time.time() if now is None else now
        interrupted = sorted(
            p for p in (self.folder / SENDING).iterdir() if not p.name.endswith(RECEIPTS)
        )
        waiting = []
        for path in self.folder.iterdir():
            name = path.name
            if name in (DONE, REJECTED) or name.startswith(".") or name.endswith(UNFINISHED):
                continue
            if not self.exports(name):
                continue
            try:
                changed = path.lstat().st_mtime  # of a link, never of what it points to
            except FileNotFoundError:
                continue
            if now - changed >= self.settle:
                waiting.append((changed, name, path))
        return interrupted + [path for _, _, path in sorted(waiting)]

    def poll(self) -> list[Outcome]:
        """Read and send everything ready now; what became of each."""
        return [outcome for path in self.ready() if (outcome := self.handle(path))]

    def check_own_folders(self) -> None:
        """Raise :class:`NotADirectoryError` if ``done/``, ``rejected/`` or ``.sending/`` is
        no longer the folder the watcher made (whoever writes the exports swapped it for a
        link, or another folder): it stops rather than move a file or write a reason
        where that points. (A swap between this look and a move is not excluded.)"""
        for name, made in self._own.items():
            try:
                now = os.lstat(self.folder / name)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != made or not stat.S_ISDIR(now.st_mode):
                what = "gone" if now is None else _kind(now.st_mode)
                what = "another folder" if now is not None and stat.S_ISDIR(now.st_mode) else what
                why = f"{name}/ was replaced while the watcher ran (now {what}): it stops"
                raise NotADirectoryError(errno.ENOTDIR, why)

    def handle(self, path: Path) -> Outcome | None:
        """One file: taken into ``.sending/``, what was taken read, sent, moved to
        ``done/``; or rejected. None if it went before it could be taken.

        Taken first, by a rename, so that what is read is what is filed: a file the MIS
        replaces meanwhile is a new file in the folder, read in its turn."""
        self.check_own_folders()
        name = str(path)
        if path.parent.name != SENDING and path.name.endswith(RECEIPTS):
            # Never taken into .sending/, where it would pass for another file's receipts.
            why = f"{name}: refused unread: named as the receipts the watcher files, not an export"
            return self._reject(path.name, path, why)
        try:
            taken = path if path.parent.name == SENDING else _move(path, self.folder / SENDING)
        except FileNotFoundError:
            return None
        except OSError as exc:  # not this watcher's to take: it waits, and the rest go on
            why = f"cannot be taken into {SENDING}/: {exc.strerror or exc}"
            log.info("file_not_taken", file=shown_text(path.name), why=why)
            return Outcome(path.name, "waiting", why=why)
        try:
            with _regular(taken) as stream:
                converted = self.convert(stream, name)
        except NotAFile as odd:
            return self._reject(path.name, taken, f"{name}: refused: {odd}; only files are read")
        except FileRefused as refused:
            return self._reject(path.name, taken, str(refused))
        except Exception as exc:  # a fault of the reader's: this file alone is set aside
            log.error("file_reader_failed", file=shown_text(name), error=type(exc).__name__)
            why = f"{name}: could not be read: the reader failed ({type(exc).__name__})"
            return self._reject(path.name, taken, why)
        return self._sent(path.name, taken, converted)

    def _sent(self, name: str, taken: Path, converted: Converted) -> Outcome:
        for note in converted.notes:
            self.told(note)
        records = [orjson.dumps(event) for event in converted.events]
        shown = shown_text(name)
        kept = self._receipts_of(taken) if self.receipts else None
        try:
            lacking = self.send(records, kept)
        except Exception as exc:  # the broker's fault, not the file's: it waits, unsent
            log.info("file_not_sent", file=shown, why=f"{type(exc).__name__}: {exc}")
            return Outcome(name, "waiting", len(records), f"not acknowledged: {exc}")
        if lacking:
            log.info("file_not_recorded", file=shown, events=len(records), lacking=len(lacking))
            return Outcome(name, "waiting", len(records), _lacking(lacking, len(records)))
        _file_away(taken, receipts_beside(taken), self.folder / DONE)
        log.info("file_sent", file=shown, events=len(records), receipts=self.receipts)
        return Outcome(name, "done", len(records))

    def _receipts_of(self, taken: Path) -> Path:
        """Where the receipts of the file ``taken`` are kept while it is sent. A watcher
        killed between filing a file's receipts and the file itself (receipts first)
        left them in ``done/`` under the name the file was to have, free still: they are
        taken back, so that the file is filed beside them without sending again."""
        kept = receipts_beside(taken)
        found = _mode(kept)
        if not found:
            filed = receipts_beside(_free_name(taken, self.folder / DONE))
            if stat.S_ISREG(_mode(filed)):
                with suppress(FileNotFoundError):
                    os.replace(filed, kept)
        elif not stat.S_ISREG(found):  # never followed: receipts are written there
            why = f"{kept}: refused: it is {_kind(found)}, where the watcher keeps receipts"
            self._reject(kept.name, kept, why)
        return kept

    def _reject(self, name: str, taken: Path, why: str) -> Outcome:
        # The reason first, then the receipts its events got (if a run sent some), then
        # the file: a crash between leaves the file in .sending/ to be rejected again,
        # never a rejected file without its reason nor receipts left without their file.
        # The reason's control characters are escaped: it is read at a terminal.
        why = shown_text(why)
        target = _free_name(taken, self.folder / REJECTED)
        beside(target, ".why").write_text(why + "\n", encoding="utf-8")
        kept = receipts_beside(taken)
        if taken.parent.name == SENDING and stat.S_ISREG(_mode(kept)):
            os.replace(kept, receipts_beside(target))
        os.replace(taken, target)
        log.info("file_rejected", file=shown_text(name), why=why)
        return Outcome(name, "rejected", why=why)


#: The longest name, in bytes, that the common file systems (ext4, XFS, NTFS) take.
NAME_MAX = 255


def beside(path: Path, suffix: str) -> Path:
    """The file of ``suffix`` beside ``path`` (its reason, its receipts): ``NAME`` and the
    suffix; for a name too long to take the suffix (an MIS may use all 255 bytes), the
    name cut short and marked with a digest of the whole, so that each file's companion
    is its own, found the same way every time, and can always be written."""
    name = path.name + suffix
    if len(os.fsencode(name)) <= NAME_MAX:
        return path.with_name(name)
    whole = os.fsencode(path.name)
    mark = "~" + hashlib.sha256(whole).hexdigest()[:16]
    room = NAME_MAX - len(os.fsencode(mark + suffix))
    return path.with_name(os.fsdecode(whole[:room]) + mark + suffix)


def receipts_beside(path: Path) -> Path:
    """The receipts file of the file ``path``, in the same folder."""
    return beside(path, RECEIPTS)


def _lacking(lacking: Mapping[int, str], events: int) -> str:
    """Why a file is not done yet: how many events lack a receipt, the first few named."""
    named = "; ".join(f"line {line}: {why}" for line, why in sorted(lacking.items())[:3])
    more = ", ..." if len(lacking) > 3 else ""
    hold = "holds" if len(lacking) == 1 else "hold"
    return (
        f"{len(lacking):,} of {counted(events, 'event')} {hold} no receipt of the log "
        f"({named}{more}); it stays in {SENDING}/ and what lacks one is sent again at the "
        "next poll"
    )


def _file_away(taken: Path, kept: Path, done: Path) -> None:
    """``taken`` into ``done``, its receipts (when kept) first, under the name it will
    have: a crash between the two leaves the file in ``.sending/`` and its receipts where
    :meth:`FolderWatcher._receipts_of` finds them; never a file in ``done/`` without them."""
    target = _free_name(taken, done)
    if os.path.lexists(kept):
        os.replace(kept, receipts_beside(target))
    os.replace(taken, target)


def _own_folder(path: Path) -> tuple[int, int]:
    """Make the folder ``path``, or check the one there is a folder and not a link: files
    are moved into it and reasons written there, never somewhere a link points. Its
    device and inode, by which the watcher knows it later."""
    if path.is_symlink():
        raise NotADirectoryError(errno.ENOTDIR, f"{path.name}/ is a symbolic link: move it away")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        why = f"{path.name} is not a folder: move it away"
        raise NotADirectoryError(errno.ENOTDIR, why) from None
    made = os.lstat(path)
    return made.st_dev, made.st_ino


#: What each kind of thing that is not a regular file is called in a reason.
_KINDS = (
    (stat.S_ISLNK, "a symbolic link, which is not followed"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def _mode(path: Path) -> int:
    """``path``'s mode, of a link itself, never of what it points to; 0 if it is not there."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return 0


def _kind(mode: int) -> str:
    return next((said for test, said in _KINDS if test(mode)), "not a regular file")


@contextmanager
def _regular(path: Path) -> Iterator[IO[bytes]]:
    """``path`` opened for reading if it is a regular file, not followed if a link, and
    not waited on if a FIFO (O_NOFOLLOW, O_NONBLOCK); else :class:`NotAFile`, before
    anything of it is read."""
    found = os.lstat(path)
    if not stat.S_ISREG(found.st_mode):
        raise NotAFile(f"it is {_kind(found.st_mode)}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileRefused(f"{path.name}: cannot be opened: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as stream:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (found.st_dev, found.st_ino):
            raise NotAFile(f"it was replaced by {_kind(opened.st_mode)} as it was opened")
        yield stream


def _free_name(path: Path, into: Path) -> Path:
    """A name in the folder ``into`` that nothing there has yet (a dangling link counts):
    an MIS reuses names, and nothing is overwritten."""
    target = into / path.name
    n = 1
    while os.path.lexists(target):
        n += 1
        target = into / f"{path.stem}.{n}{path.suffix}"
    return target


def _move(path: Path, into: Path) -> Path:
    """``path`` renamed into the folder ``into`` (same file system, so atomic)."""
    target = _free_name(path, into)
    os.replace(path, target)
    return target
