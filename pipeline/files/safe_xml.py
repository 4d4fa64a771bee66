"""XML from an MIS, read as hostile input: no document type declaration (so no entity
expansion and no external reference), streamed so that a file of any size is read in
bounded memory whatever it holds (see :class:`_Walk`), and every error naming the file and
the element, never a pupil.

A file is read as a root element, a header read whole, and records (a CTF's pupils, a
census's pupils on and off roll) each read whole, handed over, then dropped.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import IO
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

MIB = 1 << 20
#: How deep elements may nest: an MIS file nests six or seven deep.
MAX_DEPTH = 64
#: Bytes read with no element starting or ending: the parser holds a text, comment or
#: attribute whole (a pupil's longest is a few hundred bytes).
MAX_QUIET = MIB
#: Bytes and elements of one header or pupil's record (a full one is tens of kilobytes).
MAX_PART = 4 * MIB
MAX_PART_ELEMENTS = 50_000
#: Elements outside the header and records (a census's <School> holds a few hundred).
MAX_OUTSIDE = 100_000
#: Records in a file (a local authority's largest CTF holds some twenty thousand pupils).
MAX_RECORDS = 200_000
#: Bytes read at a time.
CHUNK = 64 * 1024


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
        that is not well-formed, holds a DTD, has another root, or goes past a bound
        (see :class:`_Walk`)."""
        root = root_of(stream, self.file)  # a file of another kind is told so at once
        if root.lower() != self.root.lower():
            raise FileRefused(
                f"{self.file}: the root element is <{root}>, not <{self.root}>: not {self.what}"
            )
        stream.seek(0)
        source = _Digesting(stream)
        walk = _Walk(self)
        try:
            yield from walk.parts(source)
        except ParseError as exc:
            raise FileRefused(_not_well_formed(self.file, exc, walk.where(), walk.count)) from None
        except DefusedXmlException:
            raise FileRefused(
                f"{self.file}: refused: it holds a document type declaration (<!DOCTYPE>), "
                "which no MIS file needs and through which entity bombs and external "
                "references come in"
            ) from None
        self.digest = source.sha.hexdigest()


class _Walk:
    """The elements of one file as the parser gives them, kept within bounds whatever
    the file holds: nesting (:data:`MAX_DEPTH`), bytes with no element starting or ending
    (:data:`MAX_QUIET`: one text, comment or attribute, or padding, which the parser
    holds whole), a header's or record's bytes and elements (:data:`MAX_PART`,
    :data:`MAX_PART_ELEMENTS`), elements outside them and records in all.

    A header or record is built whole, handed over, then taken out of the tree; any
    other element is taken out once it ends, so the tree holds the elements open and
    the part being read, never what came before.
    """

    def __init__(self, reading: Reading) -> None:
        self.reading = reading
        self.header = reading.header.lower()
        self.stack: list[Element] = []
        self.count = 0  # records read whole
        self.inside = 0  # depth of the header or record being read, 0 outside one
        self.part_from = self.elements = self.outside = self.fed = self.quiet = 0

    def parts(self, source: _Digesting) -> Iterator[Part]:
        # The parser's own queue of events, read directly (XMLPullParser.read_events
        # costs a generator step and a type check an event).
        parser = DefusedXMLParser(target=TreeBuilder(), forbid_dtd=True)
        events: deque[tuple[str, Element]] = deque()
        parser._setevents(events, ("start", "end"))  # type: ignore[attr-defined]
        try:
            while chunk := source.read(CHUNK):
                parser.feed(chunk)
                self.fed += len(chunk)
                moved = yield from self._taken(events)
                self._check_size(len(chunk), moved)
            parser.close()
        except ParseError:
            self._opened_before(events)
            raise
        yield from self._taken(events)

    def _opened_before(self, events: deque[tuple[str, Element]]) -> None:
        """The elements open where the parser stopped, from the events before it did."""
        for event, element in events:
            if event == "start":
                self.stack.append(element)
            elif self.stack:
                self.stack.pop()

    def _taken(self, events: deque[tuple[str, Element]]) -> Generator[Part, None, bool]:
        """The parts these events complete; returns whether there were any events."""
        moved, stack = bool(events), self.stack
        while events:
            event, element = events.popleft()
            if event == "start":
                stack.append(element)
                if len(stack) > MAX_DEPTH:
                    raise FileRefused(self._refusal(f"elements nested more than {MAX_DEPTH} deep"))
                if self.inside:
                    self.elements += 1
                    if self.elements > MAX_PART_ELEMENTS:
                        raise FileRefused(self._too_large(f"{MAX_PART_ELEMENTS:,} elements"))
                else:
                    self._opened(element)
                continue
            stack.pop()
            if self.inside > len(stack):
                self.inside = 0
                if key(element.tag) == self.header:
                    yield Part(element, 0)
                else:
                    self.count += 1
                    yield Part(element, self.count)
            if not self.inside and stack:
                stack[-1].remove(element)  # read, or outside any part: let it go
        return moved

    def _opened(self, element: Element) -> None:
        """Note a header or record starting, or count another element outside them."""
        name = key(element.tag)
        if name in self.reading.records or (name == self.header and self.count == 0):
            if self.count >= MAX_RECORDS:
                raise FileRefused(self._refusal(f"more than {MAX_RECORDS:,} records"))
            self.inside, self.part_from, self.elements = len(self.stack), self.fed, 0
            return
        self.outside += 1
        if self.outside > MAX_OUTSIDE:
            raise FileRefused(
                self._refusal(f"more than {MAX_OUTSIDE:,} elements outside its records")
            )

    def _check_size(self, read: int, moved: bool) -> None:
        self.quiet = 0 if moved else self.quiet + read
        if self.quiet > MAX_QUIET:
            raise FileRefused(
                self._refusal(
                    f"more than {MAX_QUIET // MIB} MiB with no element starting or ending "
                    "(a text, comment or attribute that long, or padding)"
                )
            )
        if self.inside and self.fed - self.part_from > MAX_PART:
            raise FileRefused(self._too_large(f"{MAX_PART // MIB} MiB"))

    def _too_large(self, bound: str) -> str:
        opened = self.stack[self.inside - 1]
        part = "the <Header>" if key(opened.tag) == self.header else f"record {self.count + 1}"
        return f"{self.reading.file}: {part} is larger than any MIS writes: more than {bound}"

    def _refusal(self, what: str) -> str:
        inside = f", inside <{self.where()}>" if self.stack else ""
        after = f" after record {self.count}" if self.count else ""
        return f"{self.reading.file}: refused: {what}{inside}{after}"

    def where(self) -> str:
        """The elements open, as a path (its middle left out when deep)."""
        names = [local(element.tag)[:40] for element in self.stack]
        if len(names) > 12:
            names = [*names[:6], "…", *names[-3:]]
        return "/".join(names)


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
    tag (a kilobyte at a time, and no further than :data:`MAX_QUIET`): to tell a CTF
    from a census return."""
    parser = DefusedXMLParser(target=_FirstStart(), forbid_dtd=True)
    read = 0
    try:
        while chunk := stream.read(1024):
            parser.feed(chunk)
            read += len(chunk)
            if read > MAX_QUIET:  # a comment or padding the parser would hold whole
                raise FileRefused(f"{file}: no root element in its first {MAX_QUIET // MIB} MiB")
        parser.close()
    except _Root as found:
        return local(str(found.args[0]))
    except ParseError as exc:
        raise FileRefused(_not_well_formed(file, exc, "", 0)) from None
    except DefusedXmlException:
        raise FileRefused(f"{file}: refused: it holds a document type declaration") from None
    raise FileRefused(f"{file}: holds no XML element")


def _not_well_formed(file: str, exc: ParseError, where: str, records: int) -> str:
    line, column = exc.position
    reason = str(exc).split(": line ")[0]
    if reason == "no element found":
        reason = "it ends before its elements close: truncated?"
    inside = f", inside <{where}>" if where else ""
    after = f" after record {records}" if records else ""
    return f"{file}: not well-formed XML at line {line}, column {column} ({reason}){inside}{after}"
