"""The ledger's entry: one frozen, typed record of a decision, a re-evaluation or an act.

Every place that writes an entry makes it with one of the constructors here
(:meth:`Entry.of_event` for a decision or a re-evaluation, :meth:`Entry.act`), and every
place that reads one gets it from :meth:`Entry.from_row`, its JSON columns decoded once.
What the chain and the Merkle tree cover is :meth:`Entry.hashed`: the fields of
:data:`~pipeline.ledger.records.chain.ENTRY_FIELDS`, no others.

Three reads take a column or two of millions of rows without making entries, for speed,
and say so where they do: ``ledger verify`` and the tree's leaves hash the stored text as
it is (:mod:`pipeline.ledger.integrity.verification`, :mod:`pipeline.ledger.storage.tree`),
and who read a pupil's record is found from reads' details
(:func:`pipeline.ledger.reading.reads.readers_of`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from pipeline.ledger.records.chain import ENTRY_FIELDS
from schemas import alerts
from schemas.alerts import ALERT_FIELDS


class EntryKind(StrEnum):
    """Every kind of entry the ledger holds, the one list of them. A member is its text: a
    kind read back from the database compares equal to it, and queries bind it as text.
    Entries hold the plain text (:meth:`Entry.act` takes the member's value), so that what
    the chain hashes is the same whatever made the entry."""

    DECISION = "decision"  # an event's decision as it arrived
    REEVALUATION = "reevaluation"  # an earlier decision changed by a late fact
    READ = "read"  # someone read pupils' records (a search, a report, a reveal)
    INCIDENT_ACTION = "incident_action"  # a DPO's action on an incident
    USER_ACTION = "user_action"  # a desk user made, changed, signed in or revoked
    ERASURE = "erasure"  # a pupil's payloads erased, the entries kept
    KEY_ROTATED = "key_rotated"  # the pseudonym key replaced
    PACK_ADOPTED = "pack_adopted"  # a policy pack put in force
    NOTICE_PUBLISHED = "notice_published"  # a privacy notice published
    # The log's own alerts, each an entry of the alert's kind (the contract's names).
    WITNESS_REFUSAL = alerts.WITNESS_REFUSAL
    MERGE_DELAY_MISSED = alerts.MERGE_DELAY_MISSED
    RETENTION_DUE = alerts.RETENTION_DUE


#: The kinds the writer stamps on every event, as plain text: it makes one entry per event.
_DECISION, _REEVALUATION = EntryKind.DECISION.value, EntryKind.REEVALUATION.value


class Entry(NamedTuple):
    """An entry, in the ledger's field order. ``prev_hash`` and ``hash`` are the chain's,
    as stored (None for an entry not yet appended).

    A named tuple rather than a frozen dataclass: the writer makes one per event, and a
    tuple is made in a fraction of the time, its hashed fields taken in one slice."""

    seq: int
    kind: str
    refers_to: int | None = None
    event_id: str | None = None
    event_type: str | None = None
    occurred_at: str | None = None
    recorded_at: str = ""  # every constructor sets it: a tuple's defaults must all follow
    school: str | None = None
    recipient: str | None = None
    pupil_keys: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    lawful_basis: str | None = None
    decision: str | None = None
    rules: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    policy_version: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    payload_digest: str | None = None
    details: Mapping[str, Any] | None = None
    prev_hash: str | None = None
    hash: str | None = None

    # -- made for the ledger ---------------------------------------------------------------

    @classmethod
    def of_event(
        cls,
        seq: int,
        *,
        recorded_at: str,
        event_id: str | None,
        event_type: str | None,
        occurred_at: str | None,
        school: str | None,
        recipient: str | None,
        pupil_keys: Sequence[str],
        categories: Sequence[str],
        lawful_basis: str | None,
        decision: str,
        rules: Sequence[str],
        reasons: Sequence[str],
        policy_version: str,
        payload_digest: str,
        position: tuple[str | None, int | None, int | None] | None,
        reevaluated_by: str | None = None,
        refers_to: int | None = None,
    ) -> Entry:
        """A decision about an event as it arrived at ``position`` (topic, partition,
        offset), or, given ``reevaluated_by`` (the id of the event whose fact changed
        it), a re-evaluation of the earlier decision ``refers_to``, which has no position
        of its own."""
        topic, partition, offset = position or (None, None, None)
        if reevaluated_by is None:
            kind, details = _DECISION, None
        else:  # a re-evaluation has no position of its own
            kind, details = _REEVALUATION, {"reevaluated_by": reevaluated_by}
            topic = partition = offset = None
        # In field order, by position: the writer makes one per event, and matching 21
        # keywords costs more than the rest of this put together.
        return cls(
            seq,
            kind,
            refers_to,
            event_id,
            event_type,
            occurred_at,
            recorded_at,
            school,
            recipient,
            tuple(pupil_keys),
            tuple(categories),
            lawful_basis,
            decision,
            tuple(rules),
            tuple(reasons),
            policy_version,
            topic,
            partition,
            offset,
            payload_digest,
            details,
        )

    @classmethod
    def act(
        cls,
        seq: int,
        kind: EntryKind,
        details: Mapping[str, Any],
        *,
        recorded_at: str,
        refers_to: int | None = None,
        recipient: str | None = None,
        pupil_keys: Sequence[str] = (),
        reasons: Sequence[str] = (),
    ) -> Entry:
        """An entry that records an act (a read, a desk action, a change of users, a
        witness's refusal) rather than a decision about an event: ``details`` says what
        it was."""
        return cls(
            seq=seq,
            kind=kind.value,
            refers_to=refers_to,
            recorded_at=recorded_at,
            recipient=recipient,
            pupil_keys=tuple(dict.fromkeys(pupil_keys)),
            reasons=tuple(reasons),
            details=details,
        )

    def binding(self, sides: Mapping[str, str]) -> Entry:
        """This entry vouching for the rows beside it: their digests, by name, under
        ``details["sides"]`` (see :mod:`pipeline.ledger.integrity.sides`)."""
        details = {**(self.details or {}), "sides": dict(sides)}
        # Made whole rather than by ``_replace``, which costs twice as much: the writer
        # binds every entry that brings a payload, fact or alert.
        return Entry._make((*self[:_DETAILS], details, *self[_DETAILS + 1 :]))

    def redecided(
        self, decision: str | None, rules: Sequence[str], reasons: Sequence[str]
    ) -> Entry:
        """This entry as its latest re-evaluation decided it."""
        return self._replace(decision=decision, rules=tuple(rules), reasons=tuple(reasons))

    # -- read back -------------------------------------------------------------------------

    @classmethod
    def from_row(cls, row: Any) -> Entry:
        """An entry as the database holds it (a row mapping, its JSON columns as text),
        decoded."""
        details = row["details"]
        return cls(
            seq=row["seq"],
            kind=row["kind"],
            refers_to=row["refers_to"],
            event_id=row["event_id"],
            event_type=row["event_type"],
            occurred_at=row["occurred_at"],
            recorded_at=row["recorded_at"],
            school=row["school"],
            recipient=row["recipient"],
            pupil_keys=tuple(orjson.loads(row["pupil_keys"])),
            categories=tuple(orjson.loads(row["categories"])),
            lawful_basis=row["lawful_basis"],
            decision=row["decision"],
            rules=tuple(orjson.loads(row["rules"])),
            reasons=tuple(orjson.loads(row["reasons"])),
            policy_version=row["policy_version"],
            topic=row["topic"],
            partition=row["partition"],
            offset=row["offset"],
            payload_digest=row["payload_digest"],
            details=None if details is None else orjson.loads(details),
            prev_hash=row.get("prev_hash"),
            hash=row.get("hash"),
        )

    # -- its forms -------------------------------------------------------------------------

    def hashed(self) -> dict[str, Any]:
        """The hashed fields, by name, in the ledger's order (lists as tuples)."""
        return dict(zip(ENTRY_FIELDS, self, strict=False))  # stops before prev_hash

    def alert_fields(self) -> dict[str, Any]:
        """What an alert about this entry carries of it (``ALERT_FIELDS``), lists as lists."""
        return {name: _listed(getattr(self, name)) for name in ALERT_FIELDS}

    def as_dict(self) -> dict[str, Any]:
        """Every field, by name, lists as lists: for JSON answers and exports."""
        return {name: _listed(value) for name, value in zip(self._fields, self, strict=True)}


_DETAILS = Entry._fields.index("details")


def _listed(value: Any) -> Any:
    return list(value) if type(value) is tuple else value
