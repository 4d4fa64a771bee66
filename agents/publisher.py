"""Signing checkpoints and sending them to witnesses beside the writer, never on its path
(DESIGN.md, invariant 12).

The writer process records; threads of its own sign and publish. One signs a checkpoint
every few seconds if the tree grew (holding the chain-head lock for the moment it reads
the root, as any signing does). One per witness sends that witness the latest checkpoint
it has not answered, with the consistency proof from the last one it cosigned, and
gives it a deadline over each whole request. A witness that is away or too slow is
asked again, with backoff, for whatever is latest by then: what it missed reaches it in
one request when it is back. A silent or hostile witness therefore costs recording
nothing, costs the other witnesses nothing, and shows only as a lag: how far behind the
latest checkpoint its last cosignature is (``sharing-audit worker``'s status line).

The signing thread also holds the log to its maximum merge delay: before each signing it
checks that no receipted entry has waited outside every signed checkpoint for longer
than the MMD, and raises a high-severity alert when one has (``pipeline.ledger.log.merging``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pipeline.backoff import backoff_delays
from pipeline.ledger.log.checkpoints import Signed, latest, sign_if_grown
from pipeline.ledger.log.merging import check_merge_delay
from pipeline.ledger.log.witnessing import DEADLINE, Witness, last_cosigned, submit_alone
from pipeline.ledger.storage.store import Ledger
from pipeline.logging import get_logger
from pipeline.settings import MERGE_DELAY_CHECKPOINTS
from pipeline.transparency.note import Signer

log = get_logger(__name__)

#: Seconds before asking a witness that did not answer again: the first wait, the longest.
RETRY_FIRST, RETRY_CAP = 1.0, 60.0


@dataclass(frozen=True, slots=True)
class Checkpointing:
    """How the writer's publisher signs checkpoints: with ``signer``, at most every
    ``seconds``, the latest also written to ``folder`` when given, and sent to
    ``witnesses``, each given ``deadline`` seconds per request, all told. ``merge_delay``
    is the MMD the log promises (SHARING_AUDIT_MAX_MERGE_DELAY_SECONDS; None:
    :data:`MERGE_DELAY_CHECKPOINTS` times ``seconds``, as the settings derive it)."""

    signer: Signer
    seconds: float = 10.0
    folder: str | None = None
    witnesses: tuple[Witness, ...] = ()
    deadline: float = DEADLINE
    merge_delay: float | None = None

    def promised_delay(self) -> float:
        """The MMD in seconds that the signer holds the log to."""
        if self.merge_delay is not None:
            return self.merge_delay
        return MERGE_DELAY_CHECKPOINTS * self.seconds


class Publisher:
    """The signing thread and a thread per witness, around the latest checkpoint."""

    def __init__(self, ledger: Ledger, how: Checkpointing) -> None:
        self.ledger = ledger
        self.how = how
        self._latest: Signed | None = None
        self._unsigned_why = ""  # why the last checkpoint could not be signed, if it was not
        self._news = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the threads (daemons: a writer process that ends takes them along)."""
        work = [threading.Thread(target=self._signing, name="checkpoint-signer", daemon=True)]
        work += [
            threading.Thread(target=self._witnessing, args=(w,), name=f"witness-{n}", daemon=True)
            for n, w in enumerate(self.how.witnesses)
        ]
        for thread in work:
            thread.start()
        self._threads += work

    def stop(self, wait: float = 10.0) -> None:
        """Stop the threads, waiting up to ``wait`` seconds for each (a request under
        way ends by its deadline)."""
        self._stopping.set()
        with self._news:
            self._news.notify_all()
        for thread in self._threads:
            thread.join(wait)

    def _signing(self) -> None:
        self._announce(self._kept())
        while not self._stopping.wait(self.how.seconds):
            self.hold_to_merge_delay()
            signed = self.sign()
            if signed is None and self._latest is None:  # the database was away at first
                signed = self._kept()
            self._announce(signed)

    def sign(self) -> Signed | None:
        """Sign a checkpoint if the tree grew; one that cannot be signed now is logged and
        tried again at the next turn."""
        try:
            signed = sign_if_grown(self.ledger, self.how.signer, self.how.folder)
        except Exception as exc:
            self._unsigned_why = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("checkpoint_not_signed", error=self._unsigned_why)
            return None
        self._unsigned_why = ""
        if signed is not None:
            log.info("checkpoint_signed", size=signed.checkpoint.size)
        return signed

    def hold_to_merge_delay(self) -> int | None:
        """Check, before each signing, that every receipted entry is in a signed checkpoint
        within the MMD, and raise the alert when the log has missed it (checked before
        signing, so that a miss ended by the signature that follows is still told); the
        alert's seq, or None. A ledger that cannot be read now is tried at the next turn."""
        delay = self.how.promised_delay()
        try:
            seq = check_merge_delay(self.ledger, delay, self._unsigned_why)
        except Exception as exc:
            log.warning("merge_delay_not_checked", error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return None
        if seq is not None:
            log.error("merge_delay_missed", seq=seq, max_merge_delay_seconds=delay)
        return seq

    def _kept(self) -> Signed | None:
        """The latest checkpoint signed before this process started: a witness that has
        not cosigned it is sent it, even if the tree does not grow again."""
        try:
            with self.ledger.engine.connect() as connection:
                return latest(connection)
        except Exception as exc:
            log.warning("checkpoint_not_read", error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return None

    def _announce(self, signed: Signed | None) -> None:
        if signed is None:
            return
        with self._news:
            if self._latest is None or signed.checkpoint.size > self._latest.checkpoint.size:
                self._latest = signed
            self._news.notify_all()

    def _after(self, size: int) -> Signed | None:
        """The latest checkpoint, once it is larger than ``size``; None once stopping."""
        with self._news:
            self._news.wait_for(
                lambda: (
                    self._stopping.is_set()
                    or (self._latest is not None and self._latest.checkpoint.size > size)
                )
            )
            return None if self._stopping.is_set() else self._latest

    def _witnessing(self, witness: Witness) -> None:
        """Send ``witness`` each checkpoint larger than the last it answered (cosigned or
        refused); when it does not answer, wait and send it the latest again."""
        answered = self._cosigned(witness)
        delays = backoff_delays(RETRY_FIRST, RETRY_CAP)
        while (signed := self._after(answered)) is not None:
            outcome = submit_alone(self.ledger, signed, witness, self.how.deadline)
            if outcome.line is None and not outcome.refused:
                if self._stopping.wait(next(delays)):
                    return
                continue
            delays = backoff_delays(RETRY_FIRST, RETRY_CAP)
            answered = signed.checkpoint.size

    def _cosigned(self, witness: Witness) -> int:
        try:
            return last_cosigned(self.ledger, witness)
        except Exception:  # the database is away: its first request will say so
            return 0
