"""XML from an MIS, read as hostile input: no document type declaration (so no entity
expansion and no external reference), streamed so that a file of any size is read in
bounded memory, and every error naming the file and the element, never a pupil.

A file is read as a root element, a header read whole, and records (a CTF's pupils, a
census's pupils on and off roll) each read whole, handed over, then dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser, iterparse


class FileRefused(Exception):
    """A file that cannot be read as what it claims to be; the message names the file and
    where in it, and holds no pupil's identifiers."""


def local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def key(tag: str) -> str:
    """An element's name as matched: without namespace, case aside (suppliers differ)."""
    return (tag.rsplit("}", 1)[-1] if "}" in tag else tag).lower()


def child(element: Element, name: str) -> Element | None:
    """The first child named ``name`` (case aside), or None."""
    wanted = name.lower()
    return next((c for c in element if key(c.tag) == wanted), None)


def text(element: Element | None, *path: str) -> str | None:
    """The stripped text at ``path`` under ``element`` (case aside); None if absent or
    blank."""
    for name in path:
        if element is None:
            return None
        element = child(element, name)
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


class _Digesting:
    """A binary stream that hashes what is read from it: the file's digest, for ids that
    the same file always gives, without reading it twice."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.sha.update(data)
        return data


@dataclass(frozen=True, slots=True)
class Part:
    """The header (``record`` is 0) or a record (numbered from 1), read whole."""

    element: Element
    record: int


@dataclass(slots=True)
class Reading:
    """One file as it is read: its parts in order, then its digest (SHA-256, hex)."""

    file: str
    root: str
    header: str
    records: frozenset[str]
    what: str
    digest: str = ""

    def parts(self, stream: IO[bytes]) -> Iterator[Part]:
        """The header and each record, in file order. :class:`FileRefused` for a file
        that is not well-formed, holds a DTD, or has another root.

        Only elements' ends are read (a start event per element would double the parser's
        work): a record is whole when it ends, and is then emptied, so that memory holds
        one record at a time. Where a broken file broke is worked out only when it does.
        """
        root = root_of(stream, self.file)  # a file of another kind is told so at once
        if root.lower() != self.root.lower():
            raise FileRefused(
                f"{self.file}: the root element is <{root}>, not <{self.root}>: not {self.what}"
            )
        stream.seek(0)
        source = _Digesting(stream)
        count = 0
        header = self.header.lower()
        try:
            for _, element in iterparse(source, forbid_dtd=True):
                tag = element.tag
                name = tag.lower() if "}" not in tag else key(tag)
                if name in self.records:
                    count += 1
                    yield Part(element, count)
                    element.clear()
                elif name == header and count == 0:
                    yield Part(element, 0)
        except ParseError as exc:
            raise FileRefused(_not_well_formed(self.file, exc, _path_at(stream), count)) from None
        except DefusedXmlException:
            raise FileRefused(
                f"{self.file}: refused: it holds a document type declaration (<!DOCTYPE>), "
                "which no MIS file needs and through which entity bombs and external "
                "references come in"
            ) from None
        self.digest = source.sha.hexdigest()


def _path_at(stream: IO[bytes]) -> list[str]:
    """The elements open where ``stream``'s XML stops being well-formed, read again from
    its start (an error's slow path), or none if it cannot be read again."""
    path: list[str] = []
    try:
        stream.seek(0)
        for event, element in iterparse(stream, events=("start", "end"), forbid_dtd=True):
            if event == "start":
                path.append(local(element.tag))
            else:
                path.pop()
                element.clear()
    except (ParseError, DefusedXmlException, OSError, ValueError):
        pass
    return path


class _Root(Exception):
    """Raised by :class:`_FirstStart` to stop the parser at the root's start tag."""


class _FirstStart:
    """A parser target that stops at the first start tag: the root."""

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        raise _Root(tag)

    def end(self, tag: str) -> None:
        return None

    def data(self, data: str) -> None:
        return None

    def close(self) -> None:
        return None


def root_of(stream: IO[bytes], file: str) -> str:
    """The name of the file's root element, as written, reading no further than its start
    tag (a kilobyte at a time): to tell a CTF from a census return."""
    parser = DefusedXMLParser(target=_FirstStart(), forbid_dtd=True)
    try:
        while chunk := stream.read(1024):
            parser.feed(chunk)
        parser.close()
    except _Root as found:
        return local(str(found.args[0]))
    except ParseError as exc:
        raise FileRefused(_not_well_formed(file, exc, [], 0)) from None
    except DefusedXmlException:
        raise FileRefused(f"{file}: refused: it holds a document type declaration") from None
    raise FileRefused(f"{file}: holds no XML element")


def _not_well_formed(file: str, exc: ParseError, path: list[str], records: int) -> str:
    line, column = exc.position
    reason = str(exc).split(": line ")[0]
    if reason == "no element found":
        reason = "it ends before its elements close: truncated?"
    where = "/".join(path)
    inside = f", inside <{where}>" if where else ""
    after = f" after record {records}" if records else ""
    return f"{file}: not well-formed XML at line {line}, column {column} ({reason}){inside}{after}"
