"""The School Census return (root ``Message``): what a school sends the DfE each term
through COLLECT, every pupil on roll and those who left since the last census.

    Message
     Header: CollectionDetails{Collection "SC", Term, Year, ReferenceDate},
             Source{SourceLevel, LEA, Estab, URN (recent years), SoftwareCode, DateTime}
     School ...
     Pupils
      PupilsOnRoll/PupilOnRoll*: PupilIdentifiers{UPN, names, Gender|Sex, DOB},
        PupilCharacteristics{...}, PupilStatus{...}, SpecialEducationalNeeds, Exclusions,
        HomeInformation, Attendance, ...
      PupilsNoLongerOnRoll/PupilNoLongerOnRoll* (with a LeavingDate)

The element names of recent years are not all published: names are matched case aside,
and a module the pack does not know is reported, not refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import IO
from xml.etree.ElementTree import Element

from pipeline.files.records import PupilRecord, SchoolNamed, read_records, written_at
from pipeline.files.safe_xml import FileRefused, Reading, child, text

#: Elements that only group others: a pupil's categories come from what is inside them.
GROUPS = frozenset({"pupilidentifiers", "pupilcharacteristics", "pupilstatus"})
RECORDS = frozenset({"pupilonroll", "pupilnolongeronroll"})
WHAT = "a School Census return"


@dataclass(slots=True)
class CensusFile:
    """A census return as read: the school, when, the pupils and the file's SHA-256."""

    file: str
    collection: str
    term: str
    year: str
    written: datetime
    source: SchoolNamed
    pupils: list[PupilRecord] = field(default_factory=list)
    digest: str = ""


def read_census(stream: IO[bytes], file: str) -> CensusFile:
    """The census return in ``stream``; :class:`FileRefused` if it is not one, or not
    well-formed."""
    reading = Reading(file, "Message", "Header", RECORDS, WHAT)
    read, pupils = read_records(reading, stream, GROUPS, lambda h: _header(h, file))
    read.pupils, read.digest = pupils, reading.digest
    return read


def _header(header: Element, file: str) -> CensusFile:
    details = child(header, "CollectionDetails")
    source = child(header, "Source")
    collection = text(details, "Collection")
    if collection is None or collection.upper() != "SC":
        shown = "none" if collection is None else repr(collection[:20])
        raise FileRefused(
            f"{file}: <Header>/<CollectionDetails>/<Collection> is {shown}, not 'SC': not {WHAT}"
        )
    stamp = text(source, "DateTime")
    where = "Header/Source/DateTime"
    if stamp is None:  # when the return was made is unknown: its census day stands in
        stamp, where = text(details, "ReferenceDate"), "Header/CollectionDetails/ReferenceDate"
    return CensusFile(
        file=file,
        collection="SC",
        term=text(details, "Term") or "?",
        year=text(details, "Year") or "?",
        written=written_at(stamp, file, where),
        source=SchoolNamed.of(source),
    )
