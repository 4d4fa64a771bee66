"""Who has been erased, read from the erasure entries alone (through their own index,
migration 0012): what the writer, the erasure itself and ``ledger verify`` ask, at a
cost that grows with the erasures, never with the ledger.

Apart from :mod:`pipeline.ledger.privacy.erasure` (which reads retention periods, whose reads
the writer's module serves), so that the writer can ask it too.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
from sqlalchemy import select

from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.store import ENTRY, PUPIL, any_of

#: The kind of the entry recording an erasure.


def erased_pupils(connection: Any) -> dict[str, int]:
    """Every erased pupil's pseudonym, with the seq of the entry that erased them: read
    from the erasure entries alone, found through their own index (migration 0012), so
    the answer costs as many rows as there were erasures, whatever the ledger's size."""
    erased: dict[str, int] = {}
    rows = connection.execute(
        select(ENTRY.c.seq, ENTRY.c.pupil_keys)
        .where(ENTRY.c.kind == EntryKind.ERASURE)
        .order_by(ENTRY.c.seq.desc())
    )
    for seq, keys in rows:
        erased.update(dict.fromkeys(orjson.loads(keys), int(seq)))  # the earliest stays
    return erased


class ErasingSchools:
    """Which schools have erased a pupil (an erasure entry names a pupil some entry of the
    school names), kept by a writer for as long as it runs: each time it is asked, only
    the erasures appended since the last time are read (through their own index,
    migration 0012), so asking costs nothing that grows with the ledger or with how many
    pupils were ever erased. Erasures are never undone, so what it holds stays true."""

    def __init__(self) -> None:
        self.schools: set[str] = set()
        self.read_to = 0  # the seq of the last erasure read

    def among(self, connection: Any, schools: Collection[str]) -> set[str]:
        """Which of ``schools`` have erased a pupil."""
        rows = connection.execute(
            select(ENTRY.c.seq, ENTRY.c.pupil_keys)
            .where(ENTRY.c.kind == EntryKind.ERASURE, ENTRY.c.seq > self.read_to)
            .order_by(ENTRY.c.seq)
        ).all()
        if rows:
            erased = [key for _, keys in rows for key in orjson.loads(keys)]
            named = connection.execute(
                select(ENTRY.c.school)
                .join(PUPIL, PUPIL.c.seq == ENTRY.c.seq)
                .where(any_of(connection, PUPIL.c.pupil_key, erased), ENTRY.c.school.is_not(None))
                .distinct()
            )
            self.schools.update(str(school) for (school,) in named)
            self.read_to = int(rows[-1][0])
        return self.schools & set(schools)
