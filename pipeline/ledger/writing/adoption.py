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

import threading

import orjson
from sqlalchemy import Connection, func, select

from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.store import ENTRY
from pipeline.policy.adopting import Adopted, in_force
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Schools


def adoptions_after(connection: Connection, after_seq: int = 0) -> list[Adopted]:
    """The adoptions recorded after entry ``after_seq``, in seq order."""
    rows = connection.execute(
        select(ENTRY.c.seq, ENTRY.c.details)
        .where(ENTRY.c.seq > after_seq, ENTRY.c.kind == EntryKind.PACK_ADOPTED)
        .order_by(ENTRY.c.seq)
    )
    found = []
    for seq, details in rows:
        said = orjson.loads(details)
        found.append(Adopted(seq, said["school"], said["pack"], said["new"]["source"]))
    return found


class PacksInForce:
    """The packs that decide now: the configured ones, each replaced by the latest pack the
    ledger records adopted for it, followed as the ledger grows.

    The writer, the desk and the commands that explain entries each hold one, so that an
    adoption reaches all of them: a pack adopted by one process (``policy adopt``) decides
    and explains in every other from its next look. Each look reads only the entries
    appended since the one before (a range of seqs); the first reads the adoptions through
    their own index.
    """

    def __init__(self, policy: Policy, schools: Schools | None) -> None:
        self.configured = (policy, schools)
        self.policy, self.schools = policy, schools
        self._adopted: list[Adopted] = []
        self._looked_up_to = 0  # the ledger's last seq when adoptions were last looked for
        self._lock = threading.Lock()

    def current(self, connection: Connection) -> tuple[Policy, Schools | None]:
        """The pack in force and the register, as the ledger stands on ``connection``."""
        with self._lock:
            head = connection.execute(select(func.max(ENTRY.c.seq))).scalar() or 0
            found = adoptions_after(connection, self._looked_up_to)
            self._looked_up_to = max(head, self._looked_up_to)
            if found:
                self._adopted += found
                self.policy, self.schools = in_force(*self.configured, self._adopted)
            return self.policy, self.schools
