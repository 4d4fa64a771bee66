"""The subject-access report (UK GDPR Art 15): what the ledger holds about one pupil.

Built from every ledger entry that names the pupil (the pupil index), and nothing else:
where the pupil was one of many (a census), only what concerns them is kept. Their own
place in the list is kept and the other pupils' pseudonyms are dropped; a reason that
names another pupil's place is left out, and the verdict shown is the worst over the
reasons that remain. So a parent learns where their child's data went and on what basis,
and nothing about any other child.

It is written to be posted to a parent: it names the school that holds the data (the
controller) and how to reach its Data Protection Officer, says why each recipient was
sent data (the purposes the school's pack gives) and how long each kind of data is kept
(its retention periods). The proof that the report is the ledger's (a signed checkpoint
and inclusion proofs) is for auditors, and the page puts it in an appendix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select

from pipeline.ledger.log.receipts import HOW_TO_CHECK, proofs_for
from pipeline.ledger.reading.queries import ENTRY_COLUMNS, in_scope
from pipeline.ledger.reading.reads import Requester, read_in_scope, readers_of, record_read
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage.store import (
    ENTRY,
    PAYLOAD,
    PUPIL,
    Ledger,
    binary_results,
    now_text,
)
from pipeline.logging import get_logger
from pipeline.policy.pack import Policy
from pipeline.policy.rules import PUPIL_PLACE, places_named
from pipeline.policy.schools import Controller, Schools, controller_of, policy_of
from schemas.decisions import RULE_VERDICT, RuleId, Verdict
from schemas.events import SHARING_KIND

log = get_logger(__name__)
SECTIONS = ("disclosures", "lifecycle", "rejected", "accesses")
PAYLOAD_FIELDS = ("special_condition", "channel", "purpose")


@dataclass(frozen=True, slots=True)
class Identity:
    """The pupil's plain identifiers, from the one erasable table (absent once erased)."""

    upn: str | None
    dob: str | None


def reasons_for(
    rules: Iterable[str], reasons: Iterable[str], places: set[int]
) -> list[tuple[str, str]]:
    """The (rule, reason) pairs that concern the pupil at ``places``, the pupil's place
    written as "this pupil" and anything about another pupil left out."""
    kept = []
    for rule, reason in zip(rules, reasons, strict=False):
        parts = []
        for part in reason.split("; "):
            named = places_named(part)
            if named and not named & places:
                continue
            parts.append(PUPIL_PLACE.sub("this pupil", part))
        if parts:
            kept.append((rule, "; ".join(parts)))
    return kept


def verdict_of(pairs: list[tuple[str, str]]) -> str:
    """The worst verdict over the rules kept (``allowed`` when none is)."""
    verdicts = [RULE_VERDICT[RuleId(rule)] for rule, _ in pairs]
    return max(verdicts, key=lambda v: v.rank, default=Verdict.ALLOWED).value


def places_of(pupil_key: str, pupil_keys: Sequence[str]) -> set[int]:
    """Where the pupil is in an entry's list of pupils (a census lists hundreds)."""
    places: set[int] = set()
    start = 0
    while True:
        try:
            start = pupil_keys.index(pupil_key, start)  # a C loop, not a Python one
        except ValueError:
            return places
        places.add(start)
        start += 1


#: When a retention period starts, as a parent reads it (the pack's ``counted_from``).
COUNTED_FROM = {
    "record": "from the date of each record",
    "dob": "from the pupil's date of birth",
    "left": "from the day the pupil leaves the school",
}


def _recipient(policy: Policy, recipient: str | None, event_type: str | None) -> dict[str, Any]:
    key = policy.recipient_key(recipient) if recipient else None
    permission = policy.permission_for(key, SHARING_KIND.get(event_type or ""))
    return {
        "recipient_name": policy.recipient_name(key),
        "gateway": permission.gateway if permission else None,
        "policy_purpose": permission.purpose if permission else None,
    }


def build_sar(
    pupil_key: str,
    identity: Identity,
    entries: Iterable[Entry],
    payloads: Mapping[int, Mapping[str, Any]],
    policy: Policy,
    reads: Iterable[Entry] = (),
    schools: Schools | None = None,
    school: Controller | None = None,
) -> dict[str, Any]:
    """The report, from every entry naming the pupil (any order), the payload fields of
    the sharing events among them (``special_condition``, ``channel``, ``purpose``, by
    seq), and every read whose answer held one of them (see :func:`readers_of`); each
    disclosure named, its gateway and purpose given, by its school's pack under a
    register. Each school the entries come from is named as the register gives it, else
    as ``school`` (the deployment's one school, from its settings) does. Pure."""
    ordered = sorted(entries, key=lambda e: e.seq)
    later: dict[int, list[Entry]] = {}
    for entry in ordered:
        if entry.kind == EntryKind.REEVALUATION and entry.refers_to is not None:
            later.setdefault(entry.refers_to, []).append(entry)
    report: dict[str, Any] = {name: [] for name in SECTIONS}
    erased: dict[str, Any] | None = None
    covered = [entry.seq for entry in ordered]
    present = set(covered)
    for entry in ordered:
        kind = entry.kind
        if kind == EntryKind.REEVALUATION and entry.refers_to in present:
            continue  # shown with the event it re-decides
        if kind == EntryKind.READ:
            continue  # among the reads
        if kind == EntryKind.ERASURE:
            details = entry.details or {}
            erased = {"seq": entry.seq, "at": entry.recorded_at, "rule": details.get("rule")}
            continue
        places = places_of(pupil_key, entry.pupil_keys)
        current = (later.get(entry.seq) or [entry])[-1]
        pairs = reasons_for(current.rules, current.reasons, places)
        shown = _shown(entry, current, pairs, later.get(entry.seq, []))
        if current.decision == "rejected" or entry.decision == "rejected":
            shown["decision"] = "rejected"
            report["rejected"].append(shown)
        elif entry.event_type in SHARING_KIND:
            data = payloads.get(entry.seq) or {}
            own = policy_of(schools, entry.school, policy)
            report["disclosures"].append(_disclosure(shown, entry, data, own))
        else:
            report["lifecycle"].append(shown)
    report["accesses"] = [_access(read) for read in reads]
    disclosures = report["disclosures"]
    # The schools the pupil's entries come from (one, unless the pupil moved within a trust).
    urns: list[str | None] = [
        *dict.fromkeys(e.school for e in ordered if e.kind != EntryKind.READ and e.school)
    ] or [None]
    return {
        "pupil": {"upn": identity.upn, "dob": identity.dob, "pseudonym": pupil_key},
        "erased": erased,
        "controllers": [_controller(controller_of(schools, urn, school)) for urn in urns],
        "purposes": _purposes(disclosures),
        "retention": _retention(urns, schools, policy),
        "policy": {"name": policy.name, "version": policy.version},
        "summary": {
            "recipients": sorted({d["recipient"] for d in disclosures}),
            "disclosures": len(disclosures),
            "flagged": sum(d["decision"] != "allowed" for d in disclosures),
            "rejected": len(report["rejected"]),
            "accesses": len(report["accesses"]),
        },
        **report,
        "entries": covered,
    }


def _shown(
    entry: Entry, current: Entry, pairs: list[tuple[str, str]], redecided: list[Entry]
) -> dict[str, Any]:
    """An event as the report shows it: as first decided, with the rules it breaks as
    currently decided (the reasons about the pupil's own place in it)."""
    return {
        "seq": entry.seq,
        "event_id": entry.event_id,
        "event_type": entry.event_type,
        "occurred_at": entry.occurred_at,
        "decision": verdict_of(pairs) if entry.decision != "rejected" else "rejected",
        "rules": [rule for rule, _ in pairs],
        "reasons": [reason for _, reason in pairs],
        "entries": [entry.seq, *(e.seq for e in redecided)],
        "policy_version": current.policy_version,
    }


def _disclosure(
    shown: dict[str, Any], entry: Entry, data: Mapping[str, Any], policy: Policy
) -> dict[str, Any]:
    """A sharing event as a disclosure: to whom, what, on which basis and how. The
    purpose is the pupil's own only when the event named them alone."""
    one_pupil = len(entry.pupil_keys) == 1
    return {
        **shown,
        "recipient": entry.recipient,
        **_recipient(policy, entry.recipient, entry.event_type),
        "categories": list(entry.categories),
        "lawful_basis": entry.lawful_basis,
        "special_condition": data.get("special_condition"),
        "channel": data.get("channel"),
        "purpose": data.get("purpose") if one_pupil else None,
        "pupils_in_event": len(entry.pupil_keys),
    }


def _controller(controller: Controller) -> dict[str, Any]:
    return {
        "urn": controller.urn,
        "name": controller.name,
        "address": controller.address,
        "dpo_contact": controller.dpo_contact,
        "missing": controller.missing(),
    }


def _purposes(disclosures: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Who was sent the pupil's data and why, a row per recipient and kind of sharing in
    the order each was first sent: why as the school's pack says, else as the events
    themselves said (None when neither says), and the law that allows it (the legal
    gateway, said once here rather than with each time the data was sent)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    said: dict[tuple[str, str], dict[str, None]] = {}
    for d in sorted(disclosures, key=lambda d: (d["occurred_at"] or "", d["seq"])):
        key = (d["recipient"] or "", d["event_type"] or "")
        row = rows.setdefault(
            key,
            {
                "recipient": d["recipient"],
                "recipient_name": d["recipient_name"],
                "event_type": d["event_type"],
                "purpose": d["policy_purpose"],
                "gateway": d["gateway"],
                "categories": [],
                "times": 0,
                "first": d["occurred_at"],
                "last": d["occurred_at"],
            },
        )
        row["times"] += 1
        row["last"] = d["occurred_at"]
        row["categories"] = sorted({*row["categories"], *d["categories"]})
        if d["purpose"]:
            said.setdefault(key, {})[d["purpose"]] = None
    for key, row in rows.items():
        if row["purpose"] is None and said.get(key):
            row["purpose"] = "; ".join(said[key])
    return list(rows.values())


def _retention(
    urns: Sequence[str | None], schools: Schools | None, policy: Policy
) -> list[dict[str, Any]]:
    """How long each kind of data is kept, by the pack of each school the entries come
    from: one group per pack (a trust's schools usually share one)."""
    groups: dict[str, dict[str, Any]] = {}
    for urn in urns:
        own = policy_of(schools, urn, policy)
        group = groups.setdefault(own.version, {"schools": [], "periods": _periods(own)})
        if urn is not None:
            group["schools"].append(urn)
    return list(groups.values())


def _periods(policy: Policy) -> list[dict[str, Any]]:
    """A pack's retention periods: each category kept for its own period, then the period
    of everything else (``category`` None)."""
    table = policy.spec.retention
    rows = [
        {
            "category": name,
            "covers": policy.spec.categories[name].covers,
            "kept_for": policy.retention_for(name).describe(),
            "counted_from": COUNTED_FROM[spec.counted_from],
            "source": spec.source or None,
        }
        for name, spec in table.categories.items()
    ]
    rows.append(
        {
            "category": None,
            "covers": None,
            "kept_for": policy.default_retention.describe(),
            "counted_from": COUNTED_FROM[table.default.counted_from],
            "source": table.default.source or None,
        }
    )
    return rows


def _access(read: Entry) -> dict[str, Any]:
    details = read.details or {}
    return {
        "seq": read.seq,
        "at": read.recorded_at,
        "action": details.get("action"),
        "role": details.get("role"),
        "via": details.get("via"),
    }


def subject_access(
    connection: Connection,
    pupil_key: str,
    policy: Policy,
    up_to_seq: int,
    schools: tuple[str, ...] | None = None,
    register: Schools | None = None,
    school: Controller | None = None,
) -> dict[str, Any] | None:
    """The report for ``pupil_key`` from the ledger as it stood at ``up_to_seq``: of the
    ``schools`` alone for a reader confined to them (a pupil who moved between two of a
    trust's schools has a part at each), None if they have no entry there. An entry the
    pupil index finds is shown only if its hashed pupil keys name the pupil: a row slipped
    into the index is logged and left out (``ledger verify`` names it)."""
    seqs = select(PUPIL.c.seq).where(PUPIL.c.pupil_key == pupil_key, PUPIL.c.seq <= up_to_seq)
    with binary_results(connection):
        rows = connection.execute(
            select(*(ENTRY.c[name] for name in ENTRY_COLUMNS), PAYLOAD.c.body)
            .outerjoin(PAYLOAD, PAYLOAD.c.seq == ENTRY.c.seq)
            .where(ENTRY.c.seq.in_(seqs))
        ).mappings()
    found, payloads = [], {}
    for row in rows:
        entry = Entry.from_row(row)
        if pupil_key not in entry.pupil_keys:  # the index is not believed
            log.warning("index_row_not_borne_out", table="entry_pupil", seq=entry.seq)
            continue
        reading = entry.kind == EntryKind.READ
        if not (read_in_scope(entry, schools) if reading else in_scope(entry, schools)):
            continue
        found.append(entry)
        if row["body"] is not None:
            data = orjson.loads(row["body"])["data"]
            payloads[row["seq"]] = {name: data.get(name) for name in PAYLOAD_FIELDS}
    if schools is not None and not any(e.kind != EntryKind.READ for e in found):
        return None
    known = Ledger.identities(connection, [pupil_key]).get(pupil_key)
    identity = Identity(*known) if known else Identity(None, None)
    reads = [
        r
        for r in readers_of(connection, pupil_key, found)
        if r.seq <= up_to_seq and read_in_scope(r, schools)
    ]
    return build_sar(pupil_key, identity, found, payloads, policy, reads, register, school)


def audited_sar(
    ledger: Ledger,
    reader: Requester,
    pupil_key: str,
    policy: Policy,
    quorum: int = 0,
    register: Schools | None = None,
    school: Controller | None = None,
) -> dict[str, Any] | None:
    """The report, its read recorded (naming the pupil, so it shows in their accesses),
    with each entry's inclusion proof against the checkpoint served as current (``quorum``
    cosignatures, when the log has witnesses): see :func:`verifiable`. None for a pupil
    of none of the schools a confined reader may see. ``school``: the deployment's one
    school, as its settings name it, where there is no register."""
    with ledger.engine.connect() as connection:
        as_of = Ledger.head(connection)[0]
        report = subject_access(
            connection, pupil_key, policy, as_of, reader.schools, register, school
        )
        if report is None:
            return None
        report["verifiable_log"] = verifiable(connection, report["entries"], quorum)
    seq = record_read(
        ledger,
        reader,
        "sar",
        returned=len(report["entries"]),
        as_of=as_of,
        pupil_keys=[pupil_key],
    )
    return {**report, "as_of": as_of, "read_seq": seq, "generated_at": now_text()}


def verifiable(connection: Connection, seqs: list[int], quorum: int) -> dict[str, Any] | None:
    """The checkpoint the report's entries are proven against, each entry's proof, and
    the entries too recent to be in it; None when the log has signed no checkpoint."""
    proofs = proofs_for(connection, quorum)
    if proofs is None:
        return None
    proven = proofs.inclusions(connection, seqs)
    return {
        **proofs.named(),
        "proofs": [{"seq": seq, **found} for seq, found in proven.items() if found],
        "after_the_checkpoint": [seq for seq, found in proven.items() if found is None],
        "how_to_check": HOW_TO_CHECK,
    }
