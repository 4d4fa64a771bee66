"""Schools by DfE number: a Get Information About Schools extract (the DfE's
``edubasealldataYYYYMMDD.csv``, ISO-8859-1, as published) read into a map from the DfE
number (LA code and establishment number, "LAESTAB") to the school's URN.

A DfE number can name more than one establishment over time (a school that closed and
the academy that replaced it): an open one is preferred, and a school's current number
over the number it had before (``PreviousLA (code)``, ``PreviousEstablishmentNumber``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.files.safe_xml import FileRefused

_URN = re.compile(r"^[0-9]{6}$")
_LA = re.compile(r"^[0-9]{3}$")
_ESTAB = re.compile(r"^[0-9]{1,4}$")
NEEDED = ("URN", "LA (code)", "EstablishmentNumber")


def dfe_number(la: str | None, estab: str | None) -> tuple[str, str] | None:
    """``(LA, establishment)`` normalised (the establishment as four digits), or None if
    either is not a number (``XXX``, ``MMM``, blank)."""
    la, estab = (la or "").strip(), (estab or "").strip()
    if not _LA.match(la) or not _ESTAB.match(estab):
        return None
    return la, estab.zfill(4)


@dataclass(frozen=True, slots=True)
class Gias:
    """URNs by DfE number, from an extract (empty without one)."""

    urns: dict[tuple[str, str], str] = field(default_factory=dict)
    source: str = ""

    def urn(self, la: str | None, estab: str | None) -> str | None:
        number = dfe_number(la, estab)
        return None if number is None else self.urns.get(number)


def gias_from_rows(rows: Iterable[dict[str, str]], source: str) -> Gias:
    """The map from an extract's rows (as ``csv.DictReader`` gives them)."""
    ranked: dict[tuple[str, str], tuple[int, str]] = {}
    for row in rows:
        urn = (row.get("URN") or "").strip()
        if not _URN.match(urn):
            continue
        is_open = (row.get("EstablishmentStatus (name)") or "Open").strip().startswith("Open")
        for number, rank in (
            (dfe_number(row.get("LA (code)"), row.get("EstablishmentNumber")), 2),
            (dfe_number(row.get("PreviousLA (code)"), row.get("PreviousEstablishmentNumber")), 0),
        ):
            if number is None:
                continue
            score = rank + (1 if is_open else 0)
            if number not in ranked or score > ranked[number][0]:
                ranked[number] = (score, urn)
    return Gias({number: urn for number, (_, urn) in ranked.items()}, source)


def read_gias(path: str) -> Gias:
    """The extract at ``path``; :class:`FileRefused` naming what is wrong with it."""
    try:
        with open(path, encoding="iso-8859-1", newline="") as stream:
            reader = csv.DictReader(stream)
            missing = [c for c in NEEDED if c not in (reader.fieldnames or [])]
            if missing:
                raise FileRefused(
                    f"{path}: not a GIAS extract: no column {', '.join(map(repr, missing))} "
                    "(the DfE's edubasealldata CSV has them)"
                )
            return gias_from_rows(reader, path)
    except OSError as exc:
        raise FileRefused(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except csv.Error as exc:
        raise FileRefused(f"{path}: not a CSV file: {exc}") from None
