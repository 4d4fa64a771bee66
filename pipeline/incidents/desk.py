"""The breach desk on the ledger: incidents read from it, actions appended to its chain.

An incident is the grouping of the alerts in the outbox (those not superseded before they
went out) plus, in order, the ``incident_action`` entries that refer to it; its id is the
``seq`` of its first alert. Both are kept as they are appended, in rows beside the chain
(:mod:`pipeline.ledger.storage.incident_projection`), which every reader here reads: no request
folds the history. An action is checked against the incident as it stands, read from the
rows before the chain's lock is taken and again inside the transaction that appends it,
so two people acting at once cannot both move it from the same state, and the lock is
held for one incident's rows and the append alone.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from pipeline.incidents.affected import AffectedPupil, affected_pupils
from pipeline.incidents.grouping import incident_of
from pipeline.incidents.lifecycle import (
    CLOCK_STOPPED,
    ICO_DEADLINE,
    Action,
    ActionKind,
    Incident,
    Risk,
    Status,
    last_action_for,
    status_after,
)
from pipeline.ledger.reading.queries import entries_at
from pipeline.ledger.reading.reads import Requester, record_read
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage import incident_projection
from pipeline.ledger.storage.incident_projection import Found, Narrowed
from pipeline.ledger.storage.store import Ledger, NewEntry, from_utc_text, now_text, utc_text
from pipeline.logging import get_logger
from schemas.alerts import Severity

log = get_logger(__name__)
#: The read that reveals who an incident concerned (see :func:`reveal_pupils`).
REVEAL_ACTION = "reveal_pupils"


class UnknownIncident(Exception):
    """No incident has this id."""


def _action(recorded_at: str, details: Mapping[str, Any]) -> Action:
    """The desk action an incident action's entry (its time and details) records."""
    return Action(
        ActionKind(details["action"]),
        details["by"],
        from_utc_text(recorded_at),
        risk=Risk(details["risk"]) if details.get("risk") else None,
        reasons=details.get("reasons"),
        ico_reference=details.get("ico_reference"),
        reported_at=(
            datetime.fromisoformat(details["reported_at"]) if details.get("reported_at") else None
        ),
    )


def incidents(
    connection: Connection,
    schools: tuple[str, ...] | None = None,
    ids: Collection[int] | None = None,
    open_only: bool = False,
    with_alerts: bool = True,
) -> dict[int, Incident]:
    """Incidents by id, with their history; only those of ``schools`` (URNs) for a reader
    confined to them (an incident of no school, a witness's refusal, is the trust's);
    only ``ids``, when given; only those not closed, when ``open_only``. Without
    ``with_alerts``, an incident's entries and events are left empty (all the rest of it
    is read: what may be done to it depends on nothing else)."""
    narrowed = Narrowed(
        schools,
        None if ids is None else tuple(sorted(set(ids))),
        ActionKind.CLOSE.value if open_only else None,
    )
    found = incident_projection.found(connection, narrowed, with_alerts)
    return dict(_made(found, sorted(found.kept)))


def _made(found: Found, ids: list[int]) -> list[tuple[int, Incident]]:
    """The incidents ``ids`` of those ``found``, each made of its row, alerts and actions."""
    return [
        (
            number,
            incident_of(
                found.kept[number],
                found.alerts[number],
                [_action(at, d) for _, at, d in found.actions[number]],
            ),
        )
        for number in ids
    ]


def incidents_about(
    connection: Connection, seqs: Collection[int], schools: tuple[str, ...] | None = None
) -> list[int]:
    """The ids of the incidents whose alerts were raised by any of the entries ``seqs``
    (an event's decision and its re-decisions), of ``schools`` alone for a reader confined
    to them: where an entry's page links back to."""
    return list(incidents(connection, schools, incident_projection.alerted_by(connection, seqs)))


def open_incidents_by_pupil(connection: Connection) -> dict[str, list[int]]:
    """The ids of the incidents not closed that concern each pupil (as revealing their
    pupils would name them: see :func:`affected_pupils`), of every school: a pupil is
    neither erased on request (:func:`pipeline.ledger.privacy.erasure.refusals`) nor by the
    ledger's retention while any is open (the DPO may still need to tell the family)."""
    found: dict[str, list[int]] = {}
    for number, incident in incidents(connection, open_only=True).items():
        shown = entries_at(connection, list(incident.entries))
        for pupil in affected_pupils(shown, incident.cause.rule, {}):
            found.setdefault(pupil.pupil_key, []).append(number)
    return found


def open_incidents_of(connection: Connection, pupil_key: str) -> list[int]:
    """The ids of the incidents not closed that concern ``pupil_key``
    (:func:`open_incidents_by_pupil`)."""
    return open_incidents_by_pupil(connection).get(pupil_key, [])


def take_action(
    ledger: Ledger, incident_id: int, action: Action, schools: tuple[str, ...] | None = None
) -> tuple[int, Incident]:
    """Append ``action`` to the incident's history; the new entry's ``seq``, and the
    incident as it now stands. ``schools``: those of the person acting, when confined.

    Raises :class:`UnknownIncident`, or :class:`TransitionRefused` saying why not.
    """
    with ledger.engine.connect() as connection:
        before = _incident(connection, incident_id, schools)
        before.taking(action)  # refused before any lock is taken
    with ledger.locked() as connection:
        # As it stands now: its row and history, not its alerts (what it allows needs none).
        now = _incident(connection, incident_id, schools, with_alerts=False)
        incident = replace(now, entries=before.entries, events=before.events)
        updated = incident.taking(action)
        seq = Ledger.head(connection)[0] + 1
        details = {
            "action": action.kind.value,
            "by": action.by,
            "risk": action.risk.value if action.risk else None,
            "reasons": action.reasons,
            "ico_reference": action.ico_reference,
            "reported_at": action.reported_at.isoformat() if action.reported_at else None,
        }
        entry = Entry.act(
            seq,
            EntryKind.INCIDENT_ACTION,
            {k: v for k, v in details.items() if v is not None},
            recorded_at=now_text(),
            refers_to=incident_id,
            recipient=incident.cause.recipient,
        )
        ledger.append(connection, [NewEntry(entry)])
    return seq, updated


def _incident(
    connection: Connection,
    incident_id: int,
    schools: tuple[str, ...] | None,
    with_alerts: bool = True,
) -> Incident:
    """The incident ``incident_id``, read from its rows; :class:`UnknownIncident` for none
    (or one of another school than ``schools``)."""
    found = incidents(connection, schools, (incident_id,), with_alerts=with_alerts)
    if incident_id not in found:
        raise UnknownIncident(f"no incident {incident_id}")
    return found[incident_id]


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """What the queue is narrowed to (None: any). With no status asked, a closed
    incident is left out (the queue is of work still to do) unless ``with_closed``."""

    school: str | None = None
    status: Status | None = None
    severity: Severity | None = None
    with_closed: bool = False

    def narrowed(self, schools: tuple[str, ...] | None) -> Narrowed:
        """The rows asked for by a reader confined to ``schools`` (None: every school)."""
        if self.school is not None:
            pool = (self.school,) if schools is None else schools
            schools = tuple(s for s in pool if s == self.school)
        last = None if self.status is None else last_action_for(self.status)
        closing = None if self.status is not None or self.with_closed else ActionKind.CLOSE
        return Narrowed(
            schools,
            unless_last=closing,
            last=None if self.status is None else (last.value if last else None,),
            severity=self.severity.value if self.severity else None,
        )


#: Incidents a page of the queue shows.
QUEUE_PAGE = 50


@dataclass(frozen=True, slots=True)
class Queue:
    """One page of the queue, in its order (least time left first), and how many
    incidents it holds in all and past their ICO deadline."""

    listed: list[tuple[int, Incident]]
    total: int
    overdue: int
    #: How many events each listed incident's alerts are about (from its row: without
    #: ``with_alerts`` its events are not read).
    events: dict[int, int]


def queue(
    connection: Connection,
    schools: tuple[str, ...] | None,
    asked: QueueFilter,
    now: datetime,
    limit: int | None = QUEUE_PAGE,
    offset: int = 0,
    with_alerts: bool = True,
) -> Queue:
    """The queue as a reader confined to ``schools`` (None: every school) sees it,
    narrowed as ``asked``: ``limit`` incidents from ``offset`` (None: all), least time
    left first (overdue at the top), those whose clock is stopped or never ran last; at
    equal time left the gravest first, then by id. Ordered and counted by the database
    (:func:`pipeline.ledger.storage.incident_projection.queued`): a page reads its own incidents
    alone, however many the ledger holds; without ``with_alerts`` (for a count of their
    events, not the events), none of their alerts."""
    stops = [k.value for k in ActionKind if status_after(k) in CLOCK_STOPPED]
    page = incident_projection.queued(
        connection,
        asked.narrowed(schools),
        stops,
        utc_text(now - ICO_DEADLINE),
        limit,
        offset,
    )
    found = incident_projection.found(connection, Narrowed(ids=tuple(page.ids)), with_alerts)
    listed = _made(found, [i for i in page.ids if i in found.kept])
    counts = {i: found.kept[i].events for i, _ in listed}
    return Queue(listed, page.total, page.overdue, counts)


@dataclass(frozen=True, slots=True)
class Revealed:
    """The pupils an incident concerned, and the read entry that recorded who saw them."""

    incident: Incident
    pupils: list[AffectedPupil]
    read_seq: int


def reveal_pupils(
    ledger: Ledger, reader: Requester, incident_id: int, form: str
) -> Revealed | None:
    """Who incident ``incident_id`` concerned, by UPN, date of birth and school, for the
    DPO to tell the families (Art 34); None for an incident the reader may not see (as if
    there were none). Whether the reader's role may ask is the caller's to check.

    The read is recorded before the pupils are returned, naming the incident, how many
    pupils it revealed, and in ``form`` ("page", "csv", "table") how they were shown; it
    names the pupils by pseudonym, so each one's subject-access report lists it. If it
    cannot be recorded, nothing is revealed. Nothing of a pupil is logged.
    """
    with ledger.engine.connect() as connection:
        as_of = Ledger.head(connection)[0]
        incident = incidents(connection, reader.schools, (incident_id,)).get(incident_id)
        if incident is None:
            return None
        shown = entries_at(connection, list(incident.entries))
        keys = [key for entry in shown for key in entry.pupil_keys]
        pupils = affected_pupils(shown, incident.cause.rule, Ledger.identities(connection, keys))
    read_seq = record_read(
        ledger,
        reader,
        REVEAL_ACTION,
        returned=len(pupils),
        as_of=as_of,
        pupil_keys=[pupil.pupil_key for pupil in pupils],
        extra={"incident": incident_id, "pupils": len(pupils), "format": form},
    )
    log.info(
        "pupils_revealed",
        incident=incident_id,
        by=reader.name,
        via=reader.via,
        pupil_count=len(pupils),
        read=read_seq,
    )
    return Revealed(incident, pupils, read_seq)
