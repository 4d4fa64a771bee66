"""What an MIS file holds, as the audit needs it: the schools named in its header, when it
was written, and for each pupil their UPN, date of birth and which elements of their
record carry data. Shared by the CTF and census readers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TypeVar
from xml.etree.ElementTree import Element

from pipeline.files.safe_xml import FileRefused, Reading, key, local, text
from pipeline.schooltime import SCHOOL_TIME

T = TypeVar("T")
#: Values that say there is nothing to say: a medical flag that is false, a disability
#: of NONE (no disability) or NCOL (not collected). Any other value carries data.
SAYS_NOTHING = {
    "medicalflag": frozenset({"false", "0"}),
    "disability": frozenset({"none", "ncol"}),
}


@dataclass(frozen=True, slots=True)
class SchoolNamed:
    """A school as a file names it: URN and DfE number, each as written (or None)."""

    urn: str | None
    la: str | None
    estab: str | None

    @classmethod
    def of(cls, element: Element | None) -> SchoolNamed:
        return cls(text(element, "URN"), text(element, "LEA"), text(element, "Estab"))

    @property
    def number(self) -> str:
        """The DfE number as written, ``LA/ESTAB``, for messages."""
        return f"{self.la or '?'}/{self.estab or '?'}"


@dataclass(frozen=True, slots=True)
class PupilRecord:
    """One pupil in a file: ``position`` counts from 1; ``content`` is the elements of
    their record that carry data, by name as written, in file order."""

    position: int
    upn: str
    dob: str | None
    content: tuple[str, ...]


def read_records(
    reading: Reading, stream: IO[bytes], groups: frozenset[str], header: Callable[[Element], T]
) -> tuple[T, list[PupilRecord]]:
    """A file's header (as ``header`` reads it) and its pupils, in file order;
    :class:`FileRefused` for a file with no header, or a pupil before it."""
    made: T | None = None
    pupils: list[PupilRecord] = []
    for part in reading.parts(stream):
        if part.record == 0:
            made = header(part.element)
        elif made is None:
            raise FileRefused(f"{reading.file}: pupil {part.record} comes before the <Header>")
        else:
            pupils.append(pupil_record(part.element, part.record, groups))
    if made is None:
        raise FileRefused(f"{reading.file}: no <Header>: not {reading.what}")
    return made, pupils


def written_at(value: str | None, file: str, where: str) -> datetime:
    """A header's date and time: local time in England unless it gives its own offset."""
    if value is None:
        raise FileRefused(f"{file}: <{where}> is missing: the file does not say when it was made")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FileRefused(f"{file}: <{where}> {value[:40]!r} is not a date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=SCHOOL_TIME)


#: Every value some element uses to say nothing (the others are looked up only then).
_NOTHING = frozenset().union(*SAYS_NOTHING.values())


def carries_data(element: Element) -> bool:
    """Whether any text under ``element`` says something (see :data:`SAYS_NOTHING`)."""
    for inner in element.iter():
        value = inner.text
        if value and (value := value.strip()):
            folded = value.lower()
            if folded not in _NOTHING or folded not in SAYS_NOTHING.get(key(inner.tag), ()):
                return True
    return False


def pupil_record(element: Element, position: int, groups: frozenset[str]) -> PupilRecord:
    """A pupil element read in one pass: the children that carry data (looking inside the
    ``groups``, containers that only group other elements, rather than at them), and the
    UPN and date of birth wherever the groups hold them."""
    found: dict[str, str | None] = {"upn": None, "dob": None}
    content: dict[str, None] = {}
    _walk(element, groups, found, content)
    return PupilRecord(position, found["upn"] or "", found["dob"], tuple(content))


def _walk(
    element: Element, groups: frozenset[str], found: dict[str, str | None], content: dict[str, None]
) -> None:
    for inner in element:
        name = key(inner.tag)
        if name in groups:
            _walk(inner, groups, found, content)
            continue
        if name in found and found[name] is None:
            found[name] = (inner.text or "").strip() or None
        if carries_data(inner):
            content[local(inner.tag)] = None
