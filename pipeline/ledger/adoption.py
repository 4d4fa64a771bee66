"""Adopting a pack: the switch of the pack in force, as the chain records it, read back
(:func:`pipeline.reports.whatif.adopt` records it).

A ``pack_adopted`` entry says who adopted which pack for which school (or every school),
when, the versions of the pack it replaced and of the new one, the what-if summary they
were shown, and the pack's text, so that the writer decides by it from then on (see
:func:`pipeline.policy.adopting.in_force`). Every decision entry names the version of the
pack that decided it, so the switch is visible entry by entry as well.

Adoptions are found among millions of entries without an index of their own: the writer
asks only for those after the last entry it looked at, a range of the primary key.
"""

from __future__ import annotations

import orjson
from sqlalchemy import Connection, select

from pipeline.ledger.store import ENTRY
from pipeline.policy.adopting import Adopted

ADOPTED = "pack_adopted"


def adoptions_after(connection: Connection, after_seq: int = 0) -> list[Adopted]:
    """The adoptions recorded after entry ``after_seq``, in seq order."""
    rows = connection.execute(
        select(ENTRY.c.seq, ENTRY.c.details)
        .where(ENTRY.c.seq > after_seq, ENTRY.c.kind == ADOPTED)
        .order_by(ENTRY.c.seq)
    )
    found = []
    for seq, details in rows:
        said = orjson.loads(details)
        found.append(Adopted(seq, said["school"], said["pack"], said["new"]["source"]))
    return found
