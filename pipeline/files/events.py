"""Contract events from MIS files: a transfer per pupil of a CTF, one census event per
census return, filled in from the file and the policy pack's ``files`` section.

What makes them auditable:

- categories come from the content each pupil's record actually carries, through the
  pack's mapping; an element the pack does not map is reported as a category of its own
  name, so the rules decide it instead of it passing unseen;
- ids come from the file's SHA-256 and the pupil's place in it, and nothing else in an
  event depends on where the file was read: the same file read twice, under any name,
  gives the same events, and the ledger records them once (read once with a GIAS extract
  and once without, its unresolved destination differs, and the second reading is
  recorded as ``event.id_reused``);
- a pupil whose UPN or date of birth is malformed still becomes an event, which the
  contract then rejects with its reason: nothing in a file goes unrecorded;
- a destination that cannot be resolved to a URN gets a recipient the contract treats as
  unknown, naming the DfE number (``school:laestab-838-4512``), or ``school:unknown``
  for one the file marks unknown.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pipeline.files.census import CensusFile, read_census
from pipeline.files.ctf import CtfFile, read_ctf
from pipeline.files.gias import Gias, dfe_number
from pipeline.files.records import PupilRecord, SchoolNamed
from pipeline.files.safe_xml import FileRefused, root_of
from pipeline.policy.pack import MisFileSpec, Policy
from schemas.events import CENSUS, TRANSFER

FileKind = Literal["ctf", "census"]
#: Each kind of file by its root element.
ROOTS: dict[str, FileKind] = {"ctfile": "ctf", "message": "census"}
#: How a CTF writes "not known": a URN of X's, a DfE number of X's, or MMM.
UNKNOWN_MARKS = frozenset({"xxxxxx", "xxxx", "xxx", "mmm"})
UNKNOWN_SCHOOL = "school:unknown"
PURPOSE_LENGTH = 500


@dataclass(slots=True)
class Converted:
    """A file's events, and what the reader should be told about it (an element the
    pack does not map, a destination not resolved), never naming a pupil."""

    events: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def mapping_of(policy: Policy, kind: str) -> MisFileSpec:
    """The pack's ``files.ctf`` or ``files.census``; :class:`FileRefused` without one."""
    files = policy.spec.files
    if files is None:
        raise FileRefused(
            f"the policy pack {policy.name!r} has no files section, which says what each "
            "element of a CTF or census is (see the england-schools pack)"
        )
    spec: MisFileSpec = getattr(files, kind)
    return spec


class Categoriser:
    """Element names to categories, through one of the pack's mappings."""

    def __init__(self, policy: Policy, spec: MisFileSpec) -> None:
        self.policy = policy
        self.spec = spec
        self.mapped = {name.lower(): category for name, category in spec.categories.items()}
        self.unmapped: dict[str, int] = {}

    def categories(self, pupil: PupilRecord) -> list[str]:
        found: dict[str, None] = {}
        for element in pupil.content:
            name = element.lower()
            if name in self.mapped:
                category = self.mapped[name]
                if category is not None:
                    found[category] = None
            else:
                self.unmapped[element] = self.unmapped.get(element, 0) + 1
                found[name] = None
        return list(found)

    def fields(self, categories: list[str]) -> dict[str, Any]:
        """``lawful_basis``, ``special_condition`` (when a special category is sent) and
        ``channel``, from the pack."""
        out: dict[str, Any] = {"lawful_basis": self.spec.lawful_basis}
        special = any(c in self.policy.special for c in categories)
        if special and self.spec.special_condition is not None:
            out["special_condition"] = self.spec.special_condition
        out["channel"] = self.spec.channel
        return out

    def notes(self, file: str) -> list[str]:
        return [
            f"{file}: <{element}> ({count} pupil{'s' if count != 1 else ''}) is not in the "
            f"pack's mapping: reported as category {element.lower()!r}"
            for element, count in self.unmapped.items()
        ]


def source_of(school: SchoolNamed, gias: Gias, file: str, where: str) -> str:
    """``/schools/{URN}`` for the school that sent the file; :class:`FileRefused` if it
    cannot be told (no URN and a DfE number the GIAS extract does not have)."""
    urn = _urn(school, gias)
    if urn is None:
        hint = "" if gias.urns else " (give --gias with the DfE's GIAS extract)"
        raise FileRefused(
            f"{file}: <{where}> has no URN, and its DfE number {school.number} is not "
            f"one this can resolve{hint}: which school sent it cannot be told"
        )
    return f"/schools/{urn}"


def _urn(school: SchoolNamed, gias: Gias) -> str | None:
    urn = (school.urn or "").strip()
    if len(urn) == 6 and urn.isdigit():
        return urn
    return gias.urn(school.la, school.estab)


def recipient_of(school: SchoolNamed, gias: Gias) -> tuple[str, str, bool]:
    """The destination as a recipient, what to say of it in the event's purpose, and
    whether it was resolved to a URN."""
    urn = _urn(school, gias)
    if urn is not None:
        return f"school:{urn}", f"destination DfE number {school.number}, URN {urn}", True
    marks = {(v or "").strip().lower() for v in (school.la, school.estab)}
    number = dfe_number(school.la, school.estab)
    if number is None or marks & UNKNOWN_MARKS:
        said = f"destination marked unknown (DfE number {school.number})"
        return UNKNOWN_SCHOOL, said, False
    where = "the GIAS extract given" if gias.urns else "no GIAS extract (--gias)"
    said = f"destination DfE number {school.number} not resolved to a URN: {where}"
    return f"school:laestab-{number[0]}-{number[1]}", said, False


def _pupil(record: PupilRecord) -> dict[str, str]:
    return {"upn": record.upn, "dob": record.dob} if record.dob else {"upn": record.upn}


def _id(prefix: str, digest: str, *parts: object) -> str:
    material = ":".join([digest, *map(str, parts)]).encode()
    return f"{prefix}-{hashlib.sha256(material).hexdigest()[:40]}"


def ctf_events(ctf: CtfFile, policy: Policy, gias: Gias, channel: str | None = None) -> Converted:
    """A transfer event per pupil of ``ctf``, to its destination school."""
    spec = mapping_of(policy, "ctf")
    if channel is not None:
        spec = spec.model_copy(update={"channel": channel})
    mapper = Categoriser(policy, spec)
    source = source_of(ctf.source, gias, ctf.file, "Header/SourceSchool")
    recipient, said, resolved = recipient_of(ctf.destination, gias)
    # Nothing of the file's name or place: the same file under another name is the same
    # sharing, and its events must be the same, byte for byte, to be recorded once.
    purpose = f"Common Transfer File (CTF {ctf.version}, {ctf.qualifier}); {said}"
    out = Converted()
    for pupil in ctf.pupils:
        categories = mapper.categories(pupil)
        data = {
            "recipient": recipient,
            "pupils": [_pupil(pupil)],
            "categories": categories,
            **mapper.fields(categories),
            "purpose": purpose[:PURPOSE_LENGTH],
        }
        out.events.append(
            _envelope(_id("ctf", ctf.digest, pupil.position), source, TRANSFER, ctf, data)
        )
    out.notes += mapper.notes(ctf.file)
    if not resolved:
        out.notes.append(f"{ctf.file}: {said}")
    return out


def census_event(census: CensusFile, policy: Policy, gias: Gias) -> Converted:
    """One census event to the DfE naming every pupil in the return, on roll or no
    longer on roll, with the categories of every module present."""
    mapper = Categoriser(policy, mapping_of(policy, "census"))
    source = source_of(census.source, gias, census.file, "Header/Source")
    categories: dict[str, None] = {}
    for pupil in census.pupils:
        categories.update(dict.fromkeys(mapper.categories(pupil)))
    listed = list(categories)
    data = {
        "recipient": "dfe",
        "pupils": [_pupil(p) for p in census.pupils],
        "categories": listed,
        **mapper.fields(listed),
        "purpose": (
            f"School Census return ({census.collection} {census.term} "
            f"{census.year}), {len(census.pupils)} pupils"
        )[:PURPOSE_LENGTH],
    }
    out = Converted([_envelope(_id("census", census.digest), source, CENSUS, census, data)])
    out.notes += mapper.notes(census.file)
    return out


def _envelope(
    event_id: str, source: str, kind: str, read: CtfFile | CensusFile, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": kind,
        "time": read.written.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }


def file_events(
    path: Path,
    policy: Policy,
    gias: Gias,
    kind: FileKind | None = None,
    channel: str | None = None,
) -> Converted:
    """The events of the file at ``path``: a CTF or census return (``kind``, else told by
    its root element). :class:`FileRefused` naming what is wrong: then nothing of the file
    is to be sent."""
    name = str(path)
    try:
        with path.open("rb") as stream:
            return stream_events(stream, name, policy, gias, kind, channel)
    except OSError as exc:
        raise FileRefused(f"{name}: cannot be read: {exc.strerror or exc}") from None


def stream_events(
    stream: IO[bytes],
    name: str,
    policy: Policy,
    gias: Gias,
    kind: FileKind | None = None,
    channel: str | None = None,
) -> Converted:
    """The events of the file open as ``stream`` (seekable), named ``name`` in messages:
    for a reader that chose what it opened, as the folder watcher does."""
    try:
        if kind is None:
            root = root_of(stream, name)
            if root.lower() not in ROOTS:
                raise FileRefused(
                    f"{name}: its root element <{root}> is neither a Common Transfer File "
                    "(<CTfile>) nor a School Census return (<Message>)"
                )
            kind = ROOTS[root.lower()]
            stream.seek(0)
        if kind == "ctf":
            return ctf_events(read_ctf(stream, name), policy, gias, channel)
        return census_event(read_census(stream, name), policy, gias)
    except OSError as exc:
        raise FileRefused(f"{name}: cannot be read: {exc.strerror or exc}") from None
