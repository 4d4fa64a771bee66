"""The Common Transfer File (root ``CTfile``, no namespace): the pupil's record an MIS
sends to the next school through the DfE's School to School service.

Read as the DfE's specification and the files suppliers write have it (element case
varies between suppliers: ``CTFversion`` and ``CTFVersion`` are one element here):

    CTfile
     Header: DocumentName, CTFversion, DateTime (local time), DocumentQualifier
             full|partial, SupplierID, SourceSchool{LEA, Estab, URN, SchoolName},
             DestSchool{LEA, Estab, URN}
     CTFpupilData
      Pupil*: UPN, ..., DOB, Gender|Sex, BasicDetails{...}, FSMhistory, SENhistory,
              Address, Contacts, Attendance, StageAssessments, SchoolHistory, SuppInfo
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import IO
from xml.etree.ElementTree import Element

from pipeline.files.records import PupilRecord, SchoolNamed, read_records, written_at
from pipeline.files.safe_xml import FileRefused, Reading, child, text

#: Elements that only group others: a pupil's categories come from what is inside them.
GROUPS = frozenset({"basicdetails", "suppinfo"})
WHAT = "a Common Transfer File"


@dataclass(slots=True)
class CtfFile:
    """A CTF as read: its header's facts, its pupils, and the file's SHA-256."""

    file: str
    version: str
    qualifier: str
    written: datetime
    source: SchoolNamed
    destination: SchoolNamed
    pupils: list[PupilRecord] = field(default_factory=list)
    digest: str = ""


def read_ctf(stream: IO[bytes], file: str) -> CtfFile:
    """The CTF in ``stream`` (``file`` names it in messages); :class:`FileRefused` if it
    is not one, or not well-formed."""
    reading = Reading(file, "CTfile", "Header", frozenset({"pupil"}), WHAT)
    read, pupils = read_records(reading, stream, GROUPS, lambda h: _header(h, file))
    read.pupils, read.digest = pupils, reading.digest
    return read


def _header(header: Element, file: str) -> CtfFile:
    name = text(header, "DocumentName")
    if name is not None and name.lower() != "common transfer file":
        raise FileRefused(f"{file}: <Header>/<DocumentName> is {name[:60]!r}: not {WHAT}")
    return CtfFile(
        file=file,
        version=text(header, "CTFversion") or "?",
        qualifier=(text(header, "DocumentQualifier") or "full").lower(),
        written=written_at(text(header, "DateTime"), file, "Header/DateTime"),
        source=SchoolNamed.of(child(header, "SourceSchool")),
        destination=SchoolNamed.of(child(header, "DestSchool")),
    )
