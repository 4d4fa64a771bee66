"""The breach desk on the ledger: incidents read from it, actions appended to its chain.

An incident is not stored anywhere as such: it is the grouping of the alerts in the
outbox (those not superseded before they went out) plus, in order, the ``incident_action``
entries that refer to it. Its id is the ``seq`` of its first alert. An action is checked
against the incident as it stands inside the transaction that appends it, under the chain
lock, so two people acting at once cannot both move it from the same state.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime

import orjson
from sqlalchemy import Connection

from pipeline.incidents.affected import AffectedPupil, affected_pupils
from pipeline.incidents.grouping import incidents_from
from pipeline.incidents.lifecycle import (
    Action,
    ActionKind,
    Incident,
    Risk,
    Status,
)
from pipeline.ledger.entry import Entry
from pipeline.ledger.outbox import SUPERSEDED
from pipeline.ledger.queries import Filters, entries, entries_at
from pipeline.ledger.reads import Requester, record_read
from pipeline.ledger.store import Ledger, NewEntry, from_utc_text, now_text
from pipeline.logging import get_logger
from schemas.alerts import Severity

log = get_logger(__name__)
ACTION_KIND = "incident_action"
#: The read that reveals who an incident concerned (see :func:`reveal_pupils`).
REVEAL_ACTION = "reveal_pupils"


class UnknownIncident(Exception):
    """No incident has this id."""


def _action(entry: Entry) -> Action:
    """The desk action an incident action's entry records."""
    details = entry.details or {}
    return Action(
        ActionKind(details["action"]),
        details["by"],
        from_utc_text(entry.recorded_at),
        risk=Risk(details["risk"]) if details.get("risk") else None,
        reasons=details.get("reasons"),
        ico_reference=details.get("ico_reference"),
        reported_at=(
            datetime.fromisoformat(details["reported_at"]) if details.get("reported_at") else None
        ),
    )


def incidents(
    connection: Connection, schools: tuple[str, ...] | None = None
) -> dict[int, Incident]:
    """Every incident by id, with its history; only those of ``schools`` (URNs) for a
    reader confined to them (an incident of no school, a witness's refusal, is the
    trust's)."""
    alerts = [
        orjson.loads(body)
        for (body,) in connection.exec_driver_sql(
            "SELECT body FROM alert_outbox WHERE status IS NULL OR status <> "
            f"'{SUPERSEDED}' ORDER BY seq"
        )
    ]
    by_id = {incident.entries[0]: incident for incident in incidents_from(alerts)}
    for entry in entries(connection, Filters(kind=ACTION_KIND)):
        incident = by_id.get(entry.refers_to or 0)  # an action refers to its incident
        if incident is not None:
            by_id[incident.entries[0]] = replace(
                incident, history=(*incident.history, _action(entry))
            )
    if schools is None:
        return by_id
    return {i: incident for i, incident in by_id.items() if incident.cause.school in schools}


def incidents_about(
    connection: Connection, seqs: Collection[int], schools: tuple[str, ...] | None = None
) -> list[int]:
    """The ids of the incidents whose alerts were raised by any of the entries ``seqs``
    (an event's decision and its re-decisions), of ``schools`` alone for a reader confined
    to them: where an entry's page links back to."""
    wanted = set(seqs)
    return [
        i
        for i, incident in incidents(connection, schools).items()
        if wanted & set(incident.entries)
    ]


def open_incidents_by_pupil(connection: Connection) -> dict[str, list[int]]:
    """The ids of the incidents not closed that concern each pupil (as revealing their
    pupils would name them: see :func:`affected_pupils`), of every school: a pupil is
    neither erased on request (:func:`pipeline.ledger.erasure.refusals`) nor by the
    ledger's retention while any is open (the DPO may still need to tell the family)."""
    found: dict[str, list[int]] = {}
    for number, incident in incidents(connection).items():
        if incident.status is Status.CLOSED:
            continue
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
    with ledger.locked() as connection:
        incident = incidents(connection, schools).get(incident_id)
        if incident is None:
            raise UnknownIncident(f"no incident {incident_id}")
        updated = incident.taking(action)  # raises TransitionRefused
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
            ACTION_KIND,
            {k: v for k, v in details.items() if v is not None},
            recorded_at=now_text(),
            refers_to=incident_id,
            recipient=incident.cause.recipient,
        )
        ledger.append(connection, [NewEntry(entry)])
    return seq, updated


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """What the queue is narrowed to (None: any). With no status asked, a closed
    incident is left out: the queue is of work still to do."""

    school: str | None = None
    status: Status | None = None
    severity: Severity | None = None

    def admits(self, incident: Incident) -> bool:
        status = incident.status
        return (
            (status is not Status.CLOSED if self.status is None else status is self.status)
            and (self.severity is None or incident.severity is self.severity)
            and (self.school is None or incident.cause.school == self.school)
        )


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
        incident = incidents(connection, reader.schools).get(incident_id)
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
