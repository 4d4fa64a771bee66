"""What an MIS file holds, as the audit needs it: the schools named in its header, when it
was written, and for each pupil their UPN, date of birth and which elements of their
record carry data. Shared by the CTF and census readers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from xml.etree.ElementTree import Element

from pipeline.files.safe_xml import FileRefused, key, local, text
from pipeline.schooltime import SCHOOL_TIME

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


def written_at(value: str | None, file: str, where: str) -> datetime:
    """A header's date and time: local time in England unless it gives its own offset."""
    if value is None:
        raise FileRefused(f"{file}: <{where}> is missing: the file does not say when it was made")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FileRefused(f"{file}: <{where}> {value[:40]!r} is not a date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=SCHOOL_TIME)


def carries_data(element: Element) -> bool:
    """Whether any text under ``element`` says something (see :data:`SAYS_NOTHING`)."""
    for inner in element.iter():
        value = (inner.text or "").strip()
        if value and value.lower() not in SAYS_NOTHING.get(key(inner.tag), ()):
            return True
    return False


def content(element: Element, groups: frozenset[str]) -> Iterator[str]:
    """The names of the children of ``element`` that carry data, looking inside the
    ``groups`` (containers that only group other elements) rather than at them."""
    for inner in element:
        if key(inner.tag) in groups:
            yield from content(inner, groups)
        elif carries_data(inner):
            yield local(inner.tag)


def pupil_record(element: Element, position: int, groups: frozenset[str]) -> PupilRecord:
    """A pupil element read: UPN and DOB wherever the groups hold them."""
    found: dict[str, str | None] = {"upn": None, "dob": None}
    stack = [element]
    while stack and None in found.values():
        here = stack.pop()
        for name in found:
            if found[name] is None:
                found[name] = text(here, name)
        stack.extend(c for c in here if key(c.tag) in groups)
    return PupilRecord(
        position, found["upn"] or "", found["dob"], tuple(dict.fromkeys(content(element, groups)))
    )
