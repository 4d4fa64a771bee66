"""What-if over history: every sharing event of a period replayed under a candidate pack,
and each whose decision would change, against its current decision.

A DPO about to change the pack in force asks which past events the new pack would have
decided differently: a stricter pack would flood the desk, a looser one hide breaches.
Each event is decided again from the payload the ledger kept, with the register's facts
as of its time, by the engine's own decision function; the answer names pupils by
pseudonym alone. Reading it is a read of pupil-level entries, so it is recorded (nothing
else is appended).

An event whose pupil has been erased cannot be replayed (their date of birth is gone);
an event rejected before any rule (malformed, a bad UPN) is decided by no pack: both are
counted, never replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from sqlalchemy import Connection

from pipeline.ledger.reading.history import Recorded, births, recorded_events, school_facts
from pipeline.ledger.reading.reads import Requester, record_read
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.store import Ledger, now_text
from pipeline.ledger.writing.acts import append_act
from pipeline.ledger.writing.adoption import adoptions_after
from pipeline.policy.adopting import in_force
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Schools, policy_of
from pipeline.policy.whatif import NotReplayable, Tally, candidate_packs, change_of, replayed
from pipeline.register import Register
from pipeline.reports.ropa import period_words
from schemas.decisions import Verdict

#: Events replayed at a time: their pupils' dates of birth are read together.
_CHUNK = 2_000

Candidate = Callable[[str | None], Policy]


def _chunks(events: Iterator[Recorded]) -> Iterator[list[Recorded]]:
    while chunk := list(islice(events, _CHUNK)):
        yield chunk


def replay(
    connection: Connection,
    candidate: Candidate,
    since: str | None,
    until: str | None,
    up_to_seq: int,
    schools: tuple[str, ...] | None = None,
) -> Tally:
    """Replay the period's sharing events (of ``schools`` alone, when given) under
    ``candidate`` (a school's URN to its candidate pack); the changes and counts."""
    register = Register()
    register.add_all(school_facts(connection, up_to_seq, schools))
    tally = Tally()
    for chunk in _chunks(recorded_events(connection, since, until, up_to_seq, schools)):
        born = births(connection, (k for one in chunk if one.payload for k in one.pupils))
        for one in chunk:
            _replay_one(one, born, register, candidate, tally)
    return tally


def _replay_one(
    one: Recorded,
    born: dict[str, str | None],
    register: Register,
    candidate: Candidate,
    tally: Tally,
) -> None:
    if one.payload is None:
        if one.current.decision is Verdict.REJECTED:
            tally.rejected += 1
        else:
            tally.not_replayed["the ledger kept no payload of it"] += 1
        return
    try:
        after = replayed(one.payload, one.pupils, born, register, candidate(one.event["school"]))
    except NotReplayable as exc:
        tally.not_replayed[str(exc)] += 1
        return
    tally.add(change_of(one.seq, one.event, one.current, after))


def pack_named(policy: Policy, source: str | None = None) -> dict[str, Any]:
    named: dict[str, Any] = {"name": policy.name, "version": policy.version}
    if source is not None:
        named["source"] = source
    return named


def what_if_report(
    tally: Tally,
    candidate: Policy,
    source: str,
    in_force: Iterable[Policy],
    since: str | None,
    until: str | None,
    schools: tuple[str, ...] | None,
) -> dict[str, Any]:
    """The report of a replay: the candidate and the packs in force, the period, the
    counts, and every change (pupils by pseudonym)."""
    return {
        "candidate": pack_named(candidate, source),
        "in_force": [pack_named(p) for p in {p.version: p for p in in_force}.values()],
        "period": {"since": since, "until": until, **period_words(since, until)},
        "school": schools[0] if schools and len(schools) == 1 else None,
        "schools": list(schools) if schools is not None else None,
        "totals": tally.summary(),
        "changes": [change.as_dict() for change in tally.changes],
    }


def audited_what_if(
    ledger: Ledger,
    reader: Requester,
    candidate: Candidate,
    source: str,
    policy: Policy,
    since: str | None,
    until: str | None,
    school: str | None = None,
    register: Schools | None = None,
) -> dict[str, Any] | None:
    """The what-if report (of ``school`` alone, when given), its read recorded. A reader
    confined to some schools replays theirs, and gets None for another school's."""
    if reader.schools is not None and school is not None and school not in reader.schools:
        return None
    schools = (school,) if school is not None else reader.schools
    with ledger.engine.connect() as connection:
        as_of = Ledger.head(connection)[0]
        tally = replay(connection, candidate, since, until, as_of, schools)
        default, register = packs_in_force(connection, policy, register)
    shown = schools if schools is not None else tuple(register.names) if register else (None,)
    packs_in_force_now = [policy_of(register, urn, default) for urn in shown]
    report = what_if_report(
        tally,
        candidate(shown[0] if shown else None),
        source,
        packs_in_force_now,
        since,
        until,
        schools,
    )
    seq = record_read(
        ledger,
        reader,
        "what_if",
        returned=tally.replayed,
        as_of=as_of,
        extra={
            "period": {"since": since, "until": until},
            "school": school,
            "candidate": report["candidate"]["version"],
            "changed": len(tally.changes),
        },
    )
    return {**report, "as_of": as_of, "read_seq": seq, "generated_at": now_text()}


def packs_in_force(
    connection: Connection, policy: Policy, register: Schools | None
) -> tuple[Policy, Schools | None]:
    """The deployment's packs as configured, with every adoption the ledger records."""
    return in_force(policy, register, adoptions_after(connection))


#: What of a what-if an adoption keeps: the counts, not the events.
_KEPT = ("replayed", "changed", "unchanged", "rejected", "not_replayed", "by_rule", "by_move")


def adopt(
    ledger: Ledger,
    by: Requester,
    text: str,
    source: str,
    policy: Policy,
    school: str | None = None,
    register: Schools | None = None,
) -> dict[str, Any]:
    """Replay the whole history (of ``school``, or of every school) under the pack whose
    YAML is ``text``, then record its adoption with what the replay found: from the next
    batch on, the writer decides by it. The what-if report, with the adoption's ``seq``.

    :class:`PackError` when the pack has problems (nothing is recorded then)."""
    candidate = candidate_packs(text, source, register)
    with ledger.engine.connect() as connection:
        default, now = packs_in_force(connection, policy, register)
    old = policy_of(now, school, default)
    report = audited_what_if(ledger, by, candidate, source, policy, None, None, school, register)
    assert report is not None  # whoever adopts sees the school they adopt for
    new = candidate(school)
    details = {
        "by": by.name,
        "role": by.role,
        "via": by.via,
        "school": school,
        "old": {"name": old.name, "version": old.version},
        "new": {"name": new.name, "version": new.version, "source": source},
        "what_if": {k: report["totals"][k] for k in _KEPT},
        "what_if_read": report["read_seq"],
        "pack": text,
    }
    seq = append_act(ledger, EntryKind.PACK_ADOPTED, details)
    return {**report, "adopted_seq": seq, "old": details["old"], "new": details["new"]}
