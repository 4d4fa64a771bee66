"""The ledger's own retention: erasing every pupil the ledger has kept identifiable for
as long as their schools' packs say (``ledger_retention``) after the last retention
period of their records ended (UK GDPR Art 5(1)(e) binds the audit trail too).

Which pupils go is worked out from the ledger (:func:`planned`), then they are erased
with rule ``retention`` (:func:`applied`), by ``sharing-audit ledger retention apply`` and
by the worker once a day. A pupil is passed over, saying why, while an incident not yet
closed concerns them (the DPO may still need to tell the family), or while the key the
deployment holds still remakes their pseudonym (recorded before migration 0011: erasing
the row would not unlink them until the key is rotated). Identity rows an earlier
erasure removed that came back (a restored backup) are deleted again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import Connection, select

from pipeline.incidents.desk import open_incidents_by_pupil
from pipeline.ledger.privacy.erasure import erase_again, erase_many, restored_identities
from pipeline.ledger.privacy.retention import periods_of
from pipeline.ledger.storage.store import IDENTITY, Ledger
from pipeline.ledger.writing.keys import remade
from pipeline.logging import get_logger
from pipeline.policy.pack import Policy
from pipeline.policy.retention import ledger_keeps
from pipeline.pseudonym import Pseudonymiser
from pipeline.schooltime import school_day

log = get_logger(__name__)

#: Who the ledger's retention erases a pupil as, in each erasure entry.
BY = "ledger retention"
#: Why, in each erasure entry (a reason names no date: see erasure_details).
REASON = (
    "the ledger's own retention: the last retention period of the pupil's records ended "
    "longer ago than the school's pack keeps the ledger's record of who they are"
)
#: Why a pupil is passed over.
OPEN_INCIDENT = "an incident not yet closed concerns the pupil"
KEY_REMAKES = (
    "the pseudonym key still remakes the pupil's pseudonym (recorded before migration "
    "0011): run `sharing-audit ledger rotate-key` first"
)
#: Pupils erased in one transaction: each a lock, an append and a scrub.
CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Skipped:
    """A pupil past the ledger's retention who is not erased yet, and why."""

    pupil: str
    why: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What the ledger's retention does on ``as_of``: the pupils to erase (pseudonyms,
    in order), those passed over and why, and the identity rows of erased pupils that
    came back."""

    as_of: date
    erase: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    restored: int = 0


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying a plan did: pupils erased, passed over, restored rows erased again."""

    erased: int
    skipped: int
    restored: int


def planned(
    connection: Connection,
    policy_for: Callable[[str], Policy],
    as_of: date,
    pseudonyms: Pseudonymiser | None,
) -> Plan:
    """Every pupil still identifiable whose last day in the ledger
    (:func:`~pipeline.policy.retention.ledger_keeps`) is before ``as_of``, to be erased
    unless passed over. ``pseudonyms``: the deployment's key, when one is at hand (with
    none, no pseudonym can be remade)."""
    restored = restored_identities(connection)
    upns = {
        key: upn
        for key, upn in connection.execute(select(IDENTITY.c.pupil_key, IDENTITY.c.upn))
        if key not in restored
    }
    kept = ledger_keeps(periods_of(connection, policy_for, list(upns), as_of), policy_for)
    past = [key for key in sorted(kept) if (day := kept[key]) is not None and day < as_of]
    busy = open_incidents_by_pupil(connection) if past else {}
    erase: list[str] = []
    skipped: list[Skipped] = []
    for key in past:
        if key in busy:
            skipped.append(Skipped(key, OPEN_INCIDENT))
        elif pseudonyms is not None and remade(pseudonyms, key, upns[key]):
            skipped.append(Skipped(key, KEY_REMAKES))
        else:
            erase.append(key)
    return Plan(as_of, erase, skipped, len(restored))


def applied(ledger: Ledger, plan: Plan, progress: Callable[[int], None] | None = None) -> Applied:
    """Erase the plan's pupils with rule ``retention``, :data:`CHUNK` a transaction
    (``progress`` told how many each time), and the restored identity rows again. A pupil
    erased meanwhile (another worker's round) is passed over, not erased twice."""
    restored = erase_again(ledger) if plan.restored else 0
    erased = 0
    for chunk in _chunks(plan.erase, CHUNK):
        done = erase_many(ledger, chunk, by=BY, reason=REASON, rule="retention", skip_erased=True)
        erased += len(done)
        if progress is not None:
            progress(len(chunk))
    outcome = Applied(erased, len(plan.skipped), restored)
    log.info(
        "ledger_retention_applied",
        as_of=plan.as_of.isoformat(),
        erased=outcome.erased,
        skipped=outcome.skipped,
        restored_erased_again=outcome.restored,
    )
    return outcome


class Daily:
    """The worker's round of the ledger's retention: applied at most once a school day
    by each worker (its timer ticks hourly, so a worker restarted daily still applies it).
    Several workers may each apply it the same day: what one erased, the others pass
    over under the chain-head lock (:func:`applied`)."""

    def __init__(
        self,
        ledger: Ledger,
        policy_for: Callable[[str], Policy],
        pseudonyms: Pseudonymiser | None,
    ) -> None:
        self.ledger, self.policy_for, self.pseudonyms = ledger, policy_for, pseudonyms
        self.done_on: date | None = None

    def __call__(self, now: datetime | None = None) -> Applied | None:
        """Apply the ledger's retention as of today (school time), unless done today."""
        today = school_day(now or datetime.now(UTC))
        if self.done_on == today:
            return None
        with self.ledger.engine.connect() as connection:
            plan = planned(connection, self.policy_for, today, self.pseudonyms)
        outcome = applied(self.ledger, plan)
        self.done_on = today
        return outcome


def _chunks(keys: Sequence[str], size: int) -> list[Sequence[str]]:
    return [keys[start : start + size] for start in range(0, len(keys), size)]
