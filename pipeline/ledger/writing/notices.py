"""The privacy notices a school published, each an entry in the chain.

What a notice told parents at a given time is evidence (UK GDPR Art 13 and 14): a
``notice_published`` entry holds all that the notice says
(:func:`pipeline.policy.notice.notice_of`), its digest, the pack it was made from, who
published it and from when it is in force. So the notice in force on any day can be
shown, and proven, long after the pack changed, and the sharing of that day compared with
it (:mod:`pipeline.reports.notice_check`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select

from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.store import ENTRY, Ledger
from pipeline.ledger.writing.acts import append_act
from pipeline.logging import get_logger
from pipeline.policy.notice import Says, notice_digest

log = get_logger(__name__)

#: The kind of the entry recording that a school published its privacy notice.


class PublishRefused(ValueError):
    """A notice that cannot be recorded as published; the message says why."""


@dataclass(frozen=True, slots=True)
class Published:
    """A notice as it was published: entry ``seq``, recorded at ``recorded_at`` by
    ``by``, in force from ``in_force_from`` (the ledger's UTC text) for ``school`` (its
    URN; None for a deployment of one school, with no register)."""

    seq: int
    recorded_at: str
    by: str
    school: str | None
    in_force_from: str
    digest: str
    says: Says

    @property
    def pack_version(self) -> str:
        return str(self.says["pack"]["version"])

    def summary(self) -> dict[str, Any]:
        """The publication without what the notice says, for a report."""
        return {
            "seq": self.seq,
            "recorded_at": self.recorded_at,
            "by": self.by,
            "school": self.school,
            "in_force_from": self.in_force_from,
            "digest": self.digest,
            "pack": self.says["pack"],
        }


def publish_notice(
    ledger: Ledger, says: Mapping[str, Any], *, by: str, school: str | None, in_force_from: str
) -> int:
    """Record that ``school`` published the notice saying ``says``, in force from
    ``in_force_from``; the entry's seq."""
    if not by.strip():
        raise PublishRefused("by: say who publishes the notice")
    digest = notice_digest(says)
    details = {
        "by": by.strip(),
        "school": school,
        "in_force_from": in_force_from,
        "digest": digest,
        "says": dict(says),
    }
    seq = append_act(ledger, EntryKind.NOTICE_PUBLISHED, details)
    log.info("notice_published", seq=seq, school=school, digest=digest[:16])
    return seq


def published_notices(
    connection: Connection, up_to_seq: int, schools: tuple[str, ...] | None = None
) -> list[Published]:
    """Every notice published up to entry ``up_to_seq`` (of ``schools`` alone, when
    given, and those of no school), in the order they were recorded. A school publishes
    a notice a year or so: they are few, and read whole."""
    rows = connection.execute(
        select(ENTRY.c.seq, ENTRY.c.recorded_at, ENTRY.c.details)
        .where(ENTRY.c.kind == EntryKind.NOTICE_PUBLISHED, ENTRY.c.seq <= up_to_seq)
        .order_by(ENTRY.c.seq)
    )
    found = []
    for seq, recorded_at, text in rows:
        details = _details(text)
        school = details.get("school")
        if schools is not None and school is not None and school not in schools:
            continue
        found.append(
            Published(
                seq,
                recorded_at,
                details["by"],
                school,
                details["in_force_from"],
                details["digest"],
                details["says"],
            )
        )
    return found


def _details(text: str | None) -> dict[str, Any]:
    return dict(orjson.loads(text)) if text else {}


def in_force(notices: list[Published], at: str) -> Published | None:
    """The notice in force at ``at`` (the ledger's UTC text) among one school's
    ``notices``: the one in force from the latest moment not after it, the later
    recorded where two are in force from the same moment."""
    found = None
    for notice in notices:
        if notice.in_force_from <= at and (
            found is None or (notice.in_force_from, notice.seq) > (found.in_force_from, found.seq)
        ):
            found = notice
    return found
