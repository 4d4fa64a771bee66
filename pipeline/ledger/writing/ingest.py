"""Deciding a batch of records and sealing the decisions in the ledger, in one transaction.

Steps, all inside one transaction that holds the chain-head lock:

1. read every record of the batch (decode and validate; never raises);
2. load from the ledger what the batch's events depend on: the decisions already
   recorded under its ids, reused ids, the register facts of its pupils (each with the
   school that recorded it), and, for each lifecycle fact in the batch, the recorded
   sharing events of its own school it may re-decide;
3. run the engine over the batch, the partitions holding facts first, each partition in
   its own order (:func:`in_decision_order`), allocating sequence numbers after the head;
4. append every outcome that is not a redelivery, with its index rows, register fact,
   pseudonymised payload and the pupils' identities; commit.

If anything fails the transaction rolls back and nothing of the batch is recorded, so the
caller may retry the same batch: a batch re-read after a crash records nothing twice,
because step 2 finds what the first attempt committed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, NamedTuple

import orjson

from pipeline.engine import Engine, Outcome, Position, Recorded, outcome_of
from pipeline.ledger.records.entry import Entry
from pipeline.ledger.storage.store import Ledger, NewEntry, now_text, utc_text
from pipeline.ledger.storage.tree import entry_leaf_hashes
from pipeline.ledger.writing.adoption import PacksInForce
from pipeline.ledger.writing.erased import ErasingSchools
from pipeline.ledger.writing.keys import still_bound
from pipeline.ledger.writing.pupils import identity_written, pseudonyms_of, resolved
from pipeline.logging import get_logger
from pipeline.policy.intake import (
    Reading,
    event_key,
    invalid_decision,
    read_event,
    unreadable,
)
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Schools
from pipeline.policy.severity import severity_of
from pipeline.pseudonym import Pseudonymiser
from pipeline.register import (
    ConsentGrant,
    ConsentWithdrawal,
    Destruction,
    Fact,
    Leaving,
    Register,
    SchoolFact,
    check_upn,
    fact_of,
    normalise_upn,
)
from schemas.alerts import summary_of
from schemas.decisions import Decision, Verdict
from schemas.events import (
    EVENT_TYPES,
    LIFECYCLE_MODELS,
    SHARING_MODELS,
    ConsentGiven,
    Event,
    RecordDestroyed,
)

Record = tuple[bytes, Position]
Unkeyed = tuple[str | None, int | None, int | None, str]
log = get_logger(__name__)


def fact_to_json(pupil_key: str, fact: Fact) -> dict[str, Any]:
    """A register fact as stored (no UPN: the pupil is its pseudonym)."""
    base = {"pupil_key": pupil_key, "at": fact.at.isoformat(), "event_id": fact.event_id}
    if isinstance(fact, Leaving):
        return {
            **base,
            "type": "left",
            "left_on": fact.left_on.isoformat(),
            "destination": fact.destination,
        }
    if isinstance(fact, ConsentGrant):
        return {
            **base,
            "type": "consent_given",
            "ref": fact.ref,
            "recipients": sorted(fact.recipients),
            "categories": sorted(fact.categories),
        }
    if isinstance(fact, ConsentWithdrawal):
        return {**base, "type": "consent_withdrawn", "ref": fact.ref}
    return {**base, "type": "destroyed", "categories": sorted(fact.categories)}


def fact_from_json(stored: dict[str, Any]) -> tuple[str, Fact]:
    at, event_id = datetime.fromisoformat(stored["at"]), stored["event_id"]
    kind = stored["type"]
    fact: Fact
    if kind == "left":
        fact = Leaving(at, event_id, date.fromisoformat(stored["left_on"]), stored["destination"])
    elif kind == "consent_given":
        fact = ConsentGrant(
            at,
            event_id,
            stored["ref"],
            frozenset(stored["recipients"]),
            frozenset(stored["categories"]),
        )
    elif kind == "consent_withdrawn":
        fact = ConsentWithdrawal(at, event_id, stored["ref"])
    else:
        fact = Destruction(at, event_id, frozenset(stored["categories"]))
    return stored["pupil_key"], fact


class Pupil(NamedTuple):
    """A pupil of an event as the ledger keeps them: by pseudonym, with the normalised UPN
    and the date of birth (ISO) the event gives, for the erasable identity row, and
    whether the event writes that row (:func:`pipeline.ledger.writing.pupils.identity_written`).
    A named tuple: a census makes hundreds."""

    key: str
    upn: str
    dob: str | None
    writes_identity: bool = True


def _position(entry: Entry) -> Position:
    return Position(entry.topic, entry.partition, entry.offset)


def _identified(entry: Entry) -> tuple[str, str]:
    """A decision entry's event id and payload digest: the store's reads of decisions
    ask for entries with both."""
    assert entry.event_id is not None and entry.payload_digest is not None
    return entry.event_id, entry.payload_digest


def _decision(entry: Entry) -> Decision:
    return Decision.model_validate(
        {"decision": entry.decision, "rules": entry.rules, "reasons": entry.reasons}
    )


def in_decision_order(records: Sequence[Record], readings: Sequence[Reading]) -> list[int]:
    """The positions in the batch of its records in the order to decide them: the
    partitions that hold lifecycle facts first, then the others, each partition's records
    in their own order.

    Agents take their topics at different paces, so a batch can hold a pupil's consent or
    leaving fact beside sharing events timed after it that came from another topic.
    Decided first, the fact is in the register when they are decided; decided after them,
    it re-decides each of them (a census once for each of its pupils' facts), which is the
    same final decision at many times the cost. Deciding every fact first is always safe:
    the register answers as of each sharing event's time, so a fact timed after an event
    does not decide it. (Merging the partitions by event time, as this once did, let one
    fact dated months ahead hold back the rest of its partition behind the sharing events
    of those months: a backlog's single group then made dozens of re-evaluations.)
    Partitions, not events, are put first, so that a record that is not an event keeps its
    place among the facts of its partition.
    """
    facts = {
        (position.topic, position.partition)
        for (_, position), reading in zip(records, readings, strict=True)
        if isinstance(reading.event, LIFECYCLE_MODELS)
    }
    first = [n for n, (_, p) in enumerate(records) if (p.topic, p.partition) in facts]
    if not first or len(first) == len(records):
        return list(range(len(records)))
    rest = [n for n, (_, p) in enumerate(records) if (p.topic, p.partition) not in facts]
    return first + rest


def _name_leaves(connection: Any, outcomes: Sequence[Outcome], entries: Sequence[NewEntry]) -> None:
    """Give each outcome the leaf hash of the entry it names, for its receipt: a new
    entry's as appended, a redelivery's (the entry that first recorded it) from the
    ledger."""
    leaf_of = {new.entry.seq: new.leaf for new in entries}
    earlier = [o.seq for o in outcomes if o.seq is not None and o.seq not in leaf_of]
    if earlier:
        leaf_of.update(entry_leaf_hashes(connection, earlier))
    for outcome in outcomes:
        outcome.leaf = leaf_of.get(outcome.seq) if outcome.seq is not None else None


def undecidable_reading(raw: bytes, reason: str) -> Reading:
    """The reading of a record the engine failed on: rejected for ``reason`` (or for its
    own problem, when it has one), under its event id when that can still be read. This
    is the path of last resort for a bug, so it survives a bug in reading too."""
    try:
        reading = read_event(raw)
    except Exception:
        return unreadable(raw, reason)
    return reading._replace(event=None, problem=reading.problem or reason)


def _named_pupils(
    connection: Any, given: Sequence[tuple[tuple[str, str | None], ...] | None]
) -> tuple[dict[str, str], list[tuple[Pupil, ...] | None]]:
    """Each UPN's pseudonym, and each event's pupils (``given``: its UPNs and dates of
    birth) as the ledger keeps them. Every mention of a pupil whose identity row any event
    of the batch writes brings its part, so that the row ends with the last date of birth
    the batch brings."""
    identities = resolved(connection, (upn for own in given if own for upn, _ in own))
    named = {upn: identity.key for upn, identity in identities.items()}
    written = {
        upn for own in given if own for upn, dob in own if identity_written(identities[upn], dob)
    }
    pupils = [
        None
        if own is None
        else tuple(Pupil(named[upn], upn, dob, upn in written) for upn, dob in own)
        for own in given
    ]
    return named, pupils


class LedgerWriter:
    """Decides batches of records against the ledger's state and appends the outcomes."""

    def __init__(
        self,
        ledger: Ledger,
        policy: Policy,
        pseudonym: Pseudonymiser,
        schools: Schools | None = None,
    ) -> None:
        self.ledger = ledger
        self.policy = policy
        self.pseudonym = pseudonym
        self.schools = schools
        self.erasing = ErasingSchools()
        #: The packs as configured, each replaced by any adoption the ledger records.
        self.packs = PacksInForce(policy, schools)

    def write(self, records: Sequence[Record], undecidable: str | None = None) -> list[Outcome]:
        """Decide and record ``records`` in one transaction; the outcomes, in order.

        ``undecidable``, when given, is why these records could not be decided: each is
        then recorded as rejected with that reason, so that a record the engine fails on
        is kept in the ledger rather than lost or retried for ever.
        """
        if undecidable is None:
            readings = [read_event(raw) for raw, _ in records]
        else:
            readings = [undecidable_reading(raw, undecidable) for raw, _ in records]
        given = [_given_pupils(reading.event) for reading in readings]
        outcomes: list[Outcome] = []
        with self.ledger.locked() as connection:
            # Under the lock: a key `ledger rotate-key` retired since this writer started
            # seals nothing more (one read of ledger_meta).
            still_bound(connection, self.pseudonym)
            # Under the lock: a pupil new to the ledger is given one pseudonym, whichever
            # worker meets them first (see pipeline/ledger/writing/pupils.py).
            named, pupils = _named_pupils(connection, given)
            head_seq, _ = Ledger.head(connection)
            self._follow_adoptions(connection)
            engine = Engine(
                self.policy,
                Register(pupil_key=lambda upn: named[normalise_upn(upn)]),
                schools=self.schools,
                allocate=itertools.count(head_seq + 1).__next__,
            )
            unknown = facts_for_unknown_pupils(connection, readings, given, self.erasing)
            seen_unkeyed = self._preload(connection, engine, records, readings, pupils, named)
            recorded_at = now_text()  # the transaction's time, for every entry it appends
            entries: list[NewEntry] = []
            noted = 0  # facts about pupils the ledger does not know, said so
            for index in in_decision_order(records, readings):
                (raw, position), reading = records[index], readings[index]
                if reading.key is None:
                    where = (position.topic, position.partition, position.offset, reading.digest)
                    if where in seen_unkeyed:
                        outcomes.append(
                            self._unkeyed_duplicate(reading, position, seen_unkeyed[where])
                        )
                        continue
                own = pupils[index]
                keys = None if own is None else tuple(p.key for p in own)
                for outcome in engine.process(raw, position, reading, keys):
                    if index in unknown and outcome.kind == "decision":
                        outcome.decision = _noting_unknown_pupil(outcome.decision)
                        noted += outcome.decision.decision is not Verdict.REJECTED
                    outcomes.append(outcome)
                    if outcome.kind != "duplicate":
                        entry = self._entry(outcome, position, recorded_at)
                        if outcome.kind == "decision" and own is not None:
                            self._bring(entry, outcome, reading, own)
                        entries.append(entry)
            self.ledger.append(connection, entries, seal=self.pseudonym.identity_mac)
            _name_leaves(connection, outcomes, entries)
        log.info(
            "batch_recorded",
            records=len(records),
            entries=len(entries),
            first_seq=entries[0].entry.seq if entries else None,
            last_seq=entries[-1].entry.seq if entries else None,
            duplicates=sum(1 for o in outcomes if o.kind == "duplicate"),
            facts_for_unknown_pupils=noted,
        )
        return outcomes

    def _follow_adoptions(self, connection: Any) -> None:
        """Decide by the packs adopted since the last batch, if any."""
        before = self.policy
        self.policy, self.schools = self.packs.current(connection)
        if self.policy is not before:
            log.info("pack_adoptions_followed", policy_version=self.policy.version)

    # -- what the batch depends on --------------------------------------------------------

    def _preload(
        self,
        connection: Any,
        engine: Engine,
        records: Sequence[Record],
        readings: Sequence[Reading],
        pupils_of: Sequence[tuple[Pupil, ...] | None],
        named: dict[str, str],
    ) -> dict[Unkeyed, int]:
        ids = [r.key for r in readings if r.key is not None]
        pupils: set[str] = set()
        # Each (school, pupil)'s earliest fact time in the batch: a school's facts re-decide
        # only its own events.
        since: dict[tuple[str, str], str] = {}
        for reading, own in zip(readings, pupils_of, strict=True):
            event = reading.event
            if event is None or own is None:
                continue
            keys = [p.key for p in own]
            pupils.update(keys)
            if isinstance(event, LIFECYCLE_MODELS):
                at = utc_text(event.time)
                for key in keys:
                    held = (event.urn, key)
                    since[held] = min(since.get(held, at), at)

        firsts = Ledger.decisions_for(connection, ids)
        recorded = [
            Recorded(e.seq, *_identified(e), _decision(e), position=_position(e)) for e in firsts
        ]
        if since:
            # Only what each pupil's own facts can change: events timed before a pupil's
            # first fact in the batch are unaffected.
            affected = Ledger.affected_by(connection, since)
            recorded += self._rehydrated(connection, affected, named)
            for entry, _ in affected:
                pupils.update(entry.pupil_keys)
        facts = [
            SchoolFact(school, *fact_from_json(f))
            for school, f in Ledger.facts_for(connection, pupils)
        ]
        # An arrival reusing an id is recorded only beside the id's first decision.
        decided = [_identified(e)[0] for e in firsts]
        conflicts = [
            (*_identified(c), c.seq, _decision(c))
            for c in Ledger.conflicts_for(connection, decided)
        ]
        engine.preload(recorded, facts, conflicts)
        unkeyed = [
            (p.topic, p.partition, p.offset, r.digest)
            for (_, p), r in zip(records, readings, strict=True)
            if r.key is None
        ]
        return Ledger.unkeyed_seen(connection, unkeyed)

    def _rehydrated(
        self, connection: Any, entries: Sequence[tuple[Entry, str]], named: dict[str, str]
    ) -> list[Recorded]:
        """Recorded sharing events (with their payloads' text) with their UPNs put back,
        ready to be re-decided; each UPN put back is added to ``named`` (UPN to
        pseudonym), for the engine to name its pupil by.

        An event whose pupil has been erased cannot be re-decided; its decision stands.
        """
        identity = Ledger.identities(connection, {k for e, _ in entries for k in e.pupil_keys})
        named.update({upn: key for key, (upn, _) in identity.items()})
        out = []
        for entry, text in entries:
            pupil_keys = entry.pupil_keys
            if not all(k in identity for k in pupil_keys):
                continue
            body = orjson.loads(text)
            pupils = []
            for key in pupil_keys:
                upn, dob = identity[key]
                pupils.append({"upn": upn, **({"dob": dob} if dob else {})})
            body["data"]["pupils"] = pupils
            out.append(
                Recorded(
                    entry.seq,
                    *_identified(entry),
                    _decision(entry),
                    raw=orjson.dumps(body),
                    time=datetime.fromisoformat(body["time"].upper()),
                    pupils=pupil_keys,
                    position=_position(entry),
                    school=entry.school,
                )
            )
        return out

    # -- what is recorded -----------------------------------------------------------------

    @staticmethod
    def _unkeyed_duplicate(reading: Reading, position: Position, seq: int) -> Outcome:
        outcome = outcome_of("duplicate", seq, reading, position, invalid_decision(reading))
        outcome.recorded = False
        return outcome

    def _entry(self, outcome: Outcome, position: Position, recorded_at: str) -> NewEntry:
        event = outcome.event
        decision = outcome.decision
        sharing = event if isinstance(event, SHARING_MODELS) else None
        categories: Sequence[str] = ()
        if sharing is not None:
            categories = sharing.data.categories
        elif isinstance(event, ConsentGiven | RecordDestroyed):
            categories = event.data.categories
        policy = outcome.policy or self.policy
        assert outcome.seq is not None  # only a duplicate has none of its own
        entry = Entry.of_event(
            outcome.seq,
            recorded_at=recorded_at,
            event_id=event_key(outcome.event_id),
            event_type=outcome.type if outcome.type in EVENT_TYPES else None,
            occurred_at=utc_text(event.time) if event is not None else None,
            school=event.urn if event is not None else None,
            recipient=sharing.data.recipient if sharing is not None else None,
            pupil_keys=outcome.pupils,
            categories=categories,
            lawful_basis=sharing.data.lawful_basis.value if sharing is not None else None,
            decision=decision.decision.value,
            rules=[r.value for r in decision.rules],
            reasons=decision.reasons,
            policy_version=policy.version,
            payload_digest=outcome.digest,
            position=(position.topic, position.partition, position.offset),
            reevaluated_by=outcome.reevaluated_by if outcome.kind == "reevaluation" else None,
            refers_to=outcome.refers_to,
        )
        new = NewEntry(entry)
        if outcome.recorded and outcome.changed:
            new.alert = self._alert(entry, decision, policy)
        return new

    @staticmethod
    def _bring(new: NewEntry, outcome: Outcome, reading: Reading, pupils: Sequence[Pupil]) -> None:
        """What a newly recorded event brings beside its entry: its pupils' identities and
        its pseudonymised payload (a sharing event) or its register fact (a lifecycle one),
        all from what was read and pseudonymised once for the batch."""
        event = outcome.event
        if event is None or not outcome.recorded or outcome.decision.decision is Verdict.REJECTED:
            return
        new.identities = [(p.key, p.upn, p.dob) for p in pupils if p.writes_identity]
        if isinstance(event, SHARING_MODELS):
            new.payload = pseudonymised(reading.value, outcome.pupils)
        elif isinstance(event, LIFECYCLE_MODELS):
            new.fact = fact_to_json(pupils[0].key, fact_of(event)[1])

    @staticmethod
    def _alert(
        entry: Entry, decision: Decision, policy: Policy
    ) -> tuple[str, dict[str, Any]] | None:
        """The alert a breach or review raises: the entry's facts, pupils by pseudonym."""
        severity = severity_of(decision.decision, entry.categories, len(entry.pupil_keys), policy)
        if severity is None:
            return None
        alert = entry.alert_fields()
        alert["reasons"] = [summary_of(reason) for reason in alert["reasons"]]
        return severity.value, {**alert, "severity": severity.value}


#: What the decision of a lifecycle fact about a pupil the ledger holds no identity for,
#: at a school that has erased a pupil, says (:func:`facts_for_unknown_pupils`). Plain
#: ASCII without quotes: ``ledger stats`` counts the entries whose reasons hold it.
UNKNOWN_PUPIL_NOTE = (
    "no earlier entry of this school names this pupil (the ledger holds no identity for "
    "their UPN: never recorded here, or erased), so this fact re-decides nothing recorded "
    "before"
)


def facts_for_unknown_pupils(
    connection: Any,
    readings: Sequence[Reading],
    given: Sequence[tuple[tuple[str, str | None], ...] | None],
    erasing: ErasingSchools,
) -> set[int]:
    """The places in the batch of lifecycle facts about a pupil the ledger holds no
    identity row for, at a school that has erased a pupil.

    Such a fact may be a late one about the erased pupil (a leaving recorded after the
    erasure): with the row gone, its UPN gets a fresh pseudonym, so it re-decides none of
    the erased pupil's events, which stand as decided. The ledger cannot tell whether it
    is (that would need something that recognises the erased UPN); it says so in the
    fact's decision (:data:`UNKNOWN_PUPIL_NOTE`) and counts such facts."""
    facts = {
        n: (reading.event.urn, own[0][0])
        for n, (reading, own) in enumerate(zip(readings, given, strict=True))
        if own and isinstance(reading.event, LIFECYCLE_MODELS)
    }
    if not facts:
        return set()
    known = pseudonyms_of(connection, [upn for _, upn in facts.values()])
    unknown = {n: school for n, (school, upn) in facts.items() if upn not in known}
    erased_at = erasing.among(connection, set(unknown.values())) if unknown else set()
    return {n for n, school in unknown.items() if school in erased_at}


def _noting_unknown_pupil(decision: Decision) -> Decision:
    """A fact's decision, saying it is about a pupil the ledger does not know (a rejected
    fact records no pupil: it is left as it is)."""
    if decision.decision is Verdict.REJECTED:
        return decision
    return decision.model_copy(update={"reasons": (*decision.reasons, UNKNOWN_PUPIL_NOTE)})


def _given_pupils(event: Event | None) -> tuple[tuple[str, str | None], ...] | None:
    """The event's pupils as it gives them: each normalised UPN and date of birth (ISO),
    checked here once for the whole batch; None when there is no event or a UPN is
    invalid (the event is rejected then, and no pupil of it is recorded)."""
    if event is None:
        return None
    if isinstance(event, SHARING_MODELS):
        given = [
            (p["upn"], p["dob"].isoformat() if "dob" in p else None) for p in event.data.pupils
        ]
    else:
        given = [(event.data.upn, None)]
    pupils = []
    for upn, dob in given:
        normal = check_upn(upn)[0]
        if normal is None:
            return None
        pupils.append((normal, dob))
    return tuple(pupils)


def pseudonymised(event: dict[str, Any], pupil_keys: Sequence[str]) -> dict[str, Any]:
    """The event as received (``event``, its decoded JSON), less anything outside the
    contract, pupils by pseudonym."""
    envelope = ("specversion", "id", "source", "type", "time", "datacontenttype")
    body = {k: event[k] for k in envelope if k in event}
    data_fields = (
        "recipient",
        "categories",
        "lawful_basis",
        "special_condition",
        "consent_ref",
        "oldest_record",
        "channel",
        "purpose",
    )
    body["data"] = {k: event["data"][k] for k in data_fields if k in event["data"]}
    body["data"]["pupils"] = [{"upn": key} for key in pupil_keys]
    return body
