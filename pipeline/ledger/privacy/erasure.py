"""Erasing a pupil's identifiers from the ledger: their identity row deleted, the erasure
recorded in the chain, and the bytes the row leaves behind in the database overwritten.

The identity row is the one place a pupil's UPN and date of birth are kept; every hashed
row names the pupil by pseudonym only. So an erasure deletes that row and changes no
leaf: ``ledger verify``, checkpoints, inclusion proofs and receipts issued before all
still verify. The erasure itself is an entry (who, why, under which rule, how many
entries name the pupil; never a UPN), appended in the same transaction as the delete.

A pupil first recorded since migration 0011 has a random pseudonym, tied to the UPN only
by the row this deletes (:mod:`pipeline.ledger.writing.pupils`). One recorded before has an HMAC
of the UPN under the key the deployment still holds, which remakes it, until the key
migration destroys that key (see deploy/README.md, "Erasing a pupil"). An erasure on
request is refused while that key remakes the pupil's pseudonym, while a retention
period still needs the data, or while an open incident concerns the pupil
(:func:`refusals`): each reason said so that the DPO can act on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select

from pipeline.ledger.privacy.retention import periods_of
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage.dialects import dialect_of
from pipeline.ledger.storage.store import IDENTITY, PUPIL, Ledger, NewEntry, any_of, now_text
from pipeline.ledger.writing.erased import erased_pupils
from pipeline.ledger.writing.keys import remade
from pipeline.logging import get_logger
from pipeline.policy.pack import Policy
from pipeline.policy.retention import Period, still_kept
from pipeline.policy.schools import Schools
from pipeline.schooltime import shown_day
from pipeline.shown import category_name, counted_from_name, school_name

log = get_logger(__name__)

#: Why a pupil is erased: a request (UK GDPR Art 17), or the ledger's own retention.
RULES = ("request", "retention")
#: The longest reason kept: a sentence or two, not a case file.
MOST_REASON = 500

# A UPN's shape (a letter, eleven digits, a digit or letter), valid or not, and a date in
# any of the usual spellings: a reason is hashed for ever, so neither may be in one.
_UPN_SHAPED = re.compile(r"(?<![0-9A-Za-z])[A-Za-z]\s?(?:\d\s?){11}[0-9A-Za-z](?![0-9A-Za-z])")
_DATE_SHAPED = re.compile(r"\d{1,4}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{1,4}")


class ErasureRefused(ValueError):
    """An erasure that cannot be made as asked: ``reasons``, each a sentence the DPO can
    act on (the message joins them)."""

    def __init__(self, *reasons: str) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request to erase is judged by (see :func:`refusals`): each school's pack
    (``policy_for``, by URN) and the day (``today``, school time) for the retention
    periods; ``pseudonymise``, the deployment's pseudonym key, which may still remake an
    old pupil's pseudonym; ``open_incidents``, the open incidents concerning a pupil (the
    desk's, read on the erasure's own connection); ``schools``, the register, to name the
    schools by."""

    policy_for: Callable[[str], Policy]
    today: date
    pseudonymise: Callable[[str], str]
    open_incidents: Callable[[Connection, str], list[int]]
    schools: Schools | None = None


@dataclass(frozen=True, slots=True)
class Erased:
    """An erasure as recorded: its entry, how many entries name the pupil, and what was
    done to the bytes the deleted row left (see :func:`scrub`)."""

    seq: int
    entries: int
    scrubbed: str


def erasure_details(by: str, reason: str, rule: str, entries: int) -> dict[str, Any]:
    """What an erasure entry records; refuses a reason that could identify the pupil.

    The entry is hashed into the chain and can never be changed, so its reason must
    never carry what the erasure removes: anything shaped like a UPN or a date (a date
    of birth) is refused, naming which. A name cannot be recognised: the form asking for
    the reason says not to give one."""
    if rule not in RULES:
        raise ErasureRefused(f"rule {rule!r}: give one of {', '.join(RULES)}")
    if not by.strip():
        raise ErasureRefused("by: say who erases the pupil")
    said = " ".join(reason.split())
    if not said:
        raise ErasureRefused("reason: say why the pupil is erased")
    if len(said) > MOST_REASON:
        raise ErasureRefused(f"reason: at most {MOST_REASON} characters (it has {len(said)})")
    if _UPN_SHAPED.search(said):
        raise ErasureRefused("reason: it holds something shaped like a UPN; leave it out")
    if _DATE_SHAPED.search(said):
        raise ErasureRefused("reason: it holds a date (a date of birth, perhaps); leave it out")
    return {"by": by.strip(), "reason": said, "rule": rule, "entries": entries}


def erasure_of(connection: Any, pupil_key: str) -> int | None:
    """The seq of the entry that erased ``pupil_key``, if one did."""
    return erasures_of(connection, [pupil_key]).get(pupil_key)


def kept_said(period: Period, schools: Schools | None = None) -> str:
    """Why a retention period still needs a pupil's data, as a DPO reads it."""
    school = school_name(period.school, schools)
    what = f"{school} keeps the pupil's {category_name(period.category)} record"
    if period.kept_until is not None:
        return f"{what}: kept until {shown_day(period.kept_until)} ({period.period} " + (
            f"{counted_from_name(period.counted_from)})"
        )
    if period.counted_from == "left":
        return f"{what}: the pupil is still on roll (kept {period.period} from leaving)"
    return f"{what}: the pupil's date of birth is not known (kept {period.period} from birth)"


def refusals(connection: Connection, pupil_key: str, needs: Needs) -> list[str]:
    """Every reason a request to erase ``pupil_key`` must be refused today, each a
    sentence the DPO can act on; none when it may be made. Refused while the deployment's
    pseudonym key still remakes the pupil's pseudonym from their UPN (a pupil recorded
    before migration 0011: erasing their row would leave the key leading to them), while
    any retention period still needs the data (:func:`~pipeline.policy.retention.still_kept`),
    and while an incident that concerns the pupil is not closed."""
    found: list[str] = []
    identity = Ledger.identities(connection, [pupil_key]).get(pupil_key)
    if identity is not None and remade(needs.pseudonymise, pupil_key, identity[0]):
        found.append(
            "the deployment's pseudonym key still makes this pupil's pseudonym from their "
            "UPN (they were recorded before migration 0011): run `sharing-audit ledger "
            "rotate-key` first"
        )
    periods = periods_of(connection, needs.policy_for, [pupil_key], needs.today)
    kept = sorted(still_kept(periods, needs.today), key=lambda p: (p.school, p.category))
    found += [kept_said(period, needs.schools) for period in kept]
    found += [
        f"incident {number} concerns the pupil and is not closed: close it first"
        for number in needs.open_incidents(connection, pupil_key)
    ]
    return found


def erase(
    ledger: Ledger,
    pupil_key: str,
    *,
    by: str,
    reason: str,
    rule: str,
    needs: Needs | None = None,
) -> Erased:
    """Delete the pupil's identity row and append the erasure's entry, in one
    transaction under the chain-head lock; then :func:`scrub` the database. A request
    (``rule="request"``) is judged by ``needs`` (:func:`refusals`) in that transaction.

    Raises :class:`ErasureRefused` for a reason that could identify the pupil, a pupil
    no entry names, one already erased (naming the entry that erased them), or every
    refusal of a request."""
    erased = erase_many(ledger, [pupil_key], by=by, reason=reason, rule=rule, needs=needs)
    return erased[pupil_key]


def erase_many(
    ledger: Ledger,
    pupil_keys: Sequence[str],
    *,
    by: str,
    reason: str,
    rule: str,
    needs: Needs | None = None,
    skip_erased: bool = False,
) -> dict[str, Erased]:
    """Erase every one of ``pupil_keys`` as :func:`erase` does one: their identity rows
    deleted and an erasure entry each, in one transaction under the chain-head lock, then
    one :func:`scrub`; the erasures by pupil, in the order given.

    One transaction for the lot: a thousand pupils let go by the ledger's retention cost
    one lock, one append and one rewrite of the identity table, not a thousand. Refused
    whole (nothing erased) as :func:`erase` refuses any one of them; with
    ``skip_erased``, a pupil already erased (by another worker's round, say) is passed
    over instead, and is not in the answer."""
    erasure_details(by, reason, rule, 0)  # refused before any lock is taken
    keys = list(dict.fromkeys(pupil_keys))
    if not keys:
        return {}
    with ledger.locked() as connection:
        earlier = erasures_of(connection, keys)
        if earlier and not skip_erased:
            raise ErasureRefused(f"this pupil was erased already, by entry {min(earlier.values())}")
        keys = [key for key in keys if key not in earlier]
        named = entries_naming(connection, keys)
        if any(not named.get(key) for key in keys):
            raise ErasureRefused("no entry names this pupil: there is nothing to erase")
        if needs is not None and rule == "request":
            refused = [said for key in keys for said in refusals(connection, key, needs)]
            if refused:
                raise ErasureRefused(*refused)
        if not keys:
            return {}
        connection.execute(delete(IDENTITY).where(any_of(connection, IDENTITY.c.pupil_key, keys)))
        head = Ledger.head(connection)[0]
        recorded_at = now_text()
        made: list[NewEntry] = []
        for seq, key in enumerate(keys, head + 1):
            details = erasure_details(by, reason, rule, named[key])
            entry = Entry.act(
                seq, EntryKind.ERASURE, details, recorded_at=recorded_at, pupil_keys=[key]
            )
            made.append(NewEntry(entry))
        ledger.append(connection, made)
    scrubbed = scrub(ledger.engine)
    erased = {
        key: Erased(new.entry.seq, named[key], scrubbed)
        for key, new in zip(keys, made, strict=True)
    }
    seqs = [one.seq for one in erased.values()]
    if len(seqs) == 1:
        (one,) = erased.values()
        log.info("pupil_erased", seq=one.seq, rule=rule, entries=one.entries, scrubbed=scrubbed)
    else:  # one line for the lot: a thousand lines would say no more
        entries = sum(one.entries for one in erased.values())
        log.info(
            "pupils_erased",
            pupils=len(seqs),
            first_seq=seqs[0],
            last_seq=seqs[-1],
            rule=rule,
            entries=entries,
            scrubbed=scrubbed,
        )
    return erased


def erasures_of(connection: Any, pupil_keys: Sequence[str]) -> dict[str, int]:
    """The seq of the entry that erased each of ``pupil_keys`` erased already."""
    if not pupil_keys:
        return {}
    erased = erased_pupils(connection)
    return {key: erased[key] for key in pupil_keys if key in erased}


def entries_naming(connection: Any, pupil_keys: Sequence[str]) -> dict[str, int]:
    """How many entries name each of ``pupil_keys`` (those no entry names are left out)."""
    if not pupil_keys:
        return {}
    rows = connection.execute(
        select(PUPIL.c.pupil_key, func.count())
        .where(any_of(connection, PUPIL.c.pupil_key, pupil_keys))
        .group_by(PUPIL.c.pupil_key)
    )
    return {key: int(n) for key, n in rows}


def restored_identities(connection: Any) -> dict[str, int]:
    """The seq of the erasure of each pupil an identity row names that an erasure entry
    erased: the row came back (a restored backup, or written behind the ledger's back),
    and with it the UPN and date of birth the erasure removed."""
    erased = erased_pupils(connection)
    if not erased:
        return {}
    rows = connection.execute(
        select(IDENTITY.c.pupil_key).where(any_of(connection, IDENTITY.c.pupil_key, list(erased)))
    )
    return {key: erased[key] for (key,) in rows}


def restored_identity_faults(connection: Any) -> list[tuple[int, str]]:
    """(erasure's seq, what is wrong) for each identity row an erasure removed that came
    back (:func:`restored_identities`)."""
    fault = "an identity row names the pupil this entry erased: erase the row again"
    return [(seq, fault) for seq in sorted(restored_identities(connection).values())]


def erase_again(ledger: Ledger) -> int:
    """Delete again every identity row an erasure removed that came back, and
    :func:`scrub` what they leave; how many. Their erasures are in the chain already: no
    entry is appended (``ledger verify`` stops naming them)."""
    with ledger.locked() as connection:
        back = list(restored_identities(connection))
        if back:
            connection.execute(
                delete(IDENTITY).where(any_of(connection, IDENTITY.c.pupil_key, back))
            )
    if back:
        scrub(ledger.engine)
        log.info("restored_identities_erased_again", rows=len(back))
    return len(back)


def scrub(engine: Engine) -> str:
    """Overwrite what deleted identity rows left in the database's files; says what was
    done. How, and what may hold it back, differs by database
    (:meth:`~pipeline.ledger.storage.dialects.Dialect.scrub`): SQLite zeroes a row where it lay and
    its WAL is truncated; PostgreSQL's identity table is rewritten by VACUUM FULL, once no
    transaction older than the erasure holds the deleted row back."""
    return dialect_of(engine).scrub(engine, IDENTITY.name)
