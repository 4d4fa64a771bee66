"""An incident's life, as UK GDPR Art 33 and 34 shape it. Pure: no I/O, no clock.

A breach alert opens (or joins) an incident; the DPO acknowledges it, assesses the risk
to the pupils, reports it to the ICO within 72 hours of the school becoming aware of it
(Art 33(1)) unless it is unlikely to result in a risk, tells the pupils' families when the
risk is high (Art 34), and closes it with a reason. Art 33(5) requires a record of every
breach and of what was decided, so every action is kept, in order, with who and when;
nothing is edited.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from schemas.alerts import Severity

#: Art 33(1): "without undue delay and, where feasible, not later than 72 hours after
#: having become aware of it". Real hours: a clock change does not move the deadline.
ICO_DEADLINE = timedelta(hours=72)


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    ASSESSED = "assessed"
    REPORTED = "reported"
    SUBJECTS_NOTIFIED = "subjects_notified"
    CLOSED = "closed"


class Risk(StrEnum):
    """The DPO's assessment of the risk to the pupils' rights and freedoms."""

    NO_RISK = "no_risk"
    RISK = "risk"
    HIGH_RISK = "high_risk"


class ActionKind(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ASSESS = "assess"
    REPORT = "report"
    NOTIFY_SUBJECTS = "notify_subjects"
    CLOSE = "close"


class TransitionRefused(Exception):
    """The action is not allowed on the incident as it stands; the message says why."""


@dataclass(frozen=True, slots=True)
class Action:
    """One thing done to an incident, by whom and when, with what it records."""

    kind: ActionKind
    by: str
    at: datetime
    risk: Risk | None = None
    reasons: str | None = None
    ico_reference: str | None = None
    reported_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Cause:
    """What groups alerts into one incident: the same rule, recipient, (UK) day and
    school: in a trust's ledger, each school's incidents are its own."""

    rule: str
    recipient: str | None
    day: date
    school: str | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    cause: Cause
    severity: Severity
    detected_at: datetime
    breach: bool
    entries: tuple[int, ...] = ()
    history: tuple[Action, ...] = field(default=())
    #: The events its alerts are about: an event re-decided by a late fact may be alerted
    #: on again, and the DPO counts what was shared, not how often it was judged.
    events: frozenset[str] = frozenset()

    # -- where it stands -------------------------------------------------------------------

    @property
    def status(self) -> Status:
        status = Status.OPEN
        for action in self.history:
            status = _AFTER[action.kind]
        return status

    @property
    def risk(self) -> Risk | None:
        assessed = [a.risk for a in self.history if a.kind is ActionKind.ASSESS]
        return assessed[-1] if assessed else None

    @property
    def deadline(self) -> datetime | None:
        """When the ICO must have been told (breaches only)."""
        return self.detected_at + ICO_DEADLINE if self.breach else None

    def time_left(self, now: datetime) -> timedelta | None:
        """Real time until the deadline (negative once passed); None when the clock has
        stopped (reported, closed) or never ran (a review)."""
        if self.deadline is None or self.status in CLOCK_STOPPED:
            return None
        return self.deadline - now

    def overdue(self, now: datetime) -> bool:
        left = self.time_left(now)
        return left is not None and left < timedelta(0)

    # -- what may be done next -------------------------------------------------------------

    def refusal(self, action: Action) -> str | None:
        """Why ``action`` may not be taken now, or None when it may."""
        status, risk = self.status, self.risk
        kind = action.kind
        if status is Status.CLOSED:
            return "the incident is closed; nothing more can be done to it"
        if kind is ActionKind.ACKNOWLEDGE:
            return None if status is Status.OPEN else f"it is already {status.value}"
        if kind is ActionKind.ASSESS:
            if status not in (Status.ACKNOWLEDGED, Status.ASSESSED):
                return f"only an acknowledged incident can be assessed (it is {status.value})"
            if action.risk is None or not (action.reasons or "").strip():
                return "an assessment needs a risk level and the reasons for it"
            return None
        if kind is ActionKind.REPORT:
            if status is not Status.ASSESSED:
                return f"only an assessed incident can be reported (it is {status.value})"
            if not (action.ico_reference or "").strip() or action.reported_at is None:
                return "a report to the ICO needs the ICO's reference and when it was made"
            return None
        if kind is ActionKind.NOTIFY_SUBJECTS:
            if status is not Status.REPORTED or risk is not Risk.HIGH_RISK:
                return "the pupils' families are notified (Art 34) after reporting a high risk"
            return None
        return self._close_refusal(action)

    def _close_refusal(self, action: Action) -> str | None:
        status, risk = self.status, self.risk
        if not (action.reasons or "").strip():
            return "closing needs a reason"
        if not self.breach:
            if status is Status.OPEN:
                return "acknowledge the review before closing it"
            return None
        if risk is None:
            return "a breach must be assessed before it is closed"
        if risk is Risk.RISK and status is not Status.REPORTED:
            return "a breach assessed as a risk must be reported to the ICO before closing"
        if risk is Risk.HIGH_RISK and status is not Status.SUBJECTS_NOTIFIED:
            return (
                "a high-risk breach must be reported to the ICO and the pupils' families "
                "notified before closing"
            )
        return None

    def allowed(self) -> list[ActionKind]:
        """The actions that may be taken next, given complete details."""
        out = []
        for kind in ActionKind:
            at = self.detected_at
            risk = self.risk or Risk.NO_RISK
            complete = Action(kind, "", at, risk, reasons="-", ico_reference="-", reported_at=at)
            if self.refusal(complete) is None:
                out.append(kind)
        return out

    def taking(self, action: Action) -> Incident:
        """The incident after ``action``; :class:`TransitionRefused` if it may not be taken."""
        refused = self.refusal(action)
        if refused is not None:
            raise TransitionRefused(refused)
        return replace(self, history=(*self.history, action))


#: The statuses in which the ICO clock no longer runs: the ICO has been told, or the
#: incident is closed.
CLOCK_STOPPED = frozenset({Status.REPORTED, Status.SUBJECTS_NOTIFIED, Status.CLOSED})

_AFTER = {
    ActionKind.ACKNOWLEDGE: Status.ACKNOWLEDGED,
    ActionKind.ASSESS: Status.ASSESSED,
    ActionKind.REPORT: Status.REPORTED,
    ActionKind.NOTIFY_SUBJECTS: Status.SUBJECTS_NOTIFIED,
    ActionKind.CLOSE: Status.CLOSED,
}


def status_after(kind: ActionKind | None) -> Status:
    """The status an incident has when ``kind`` was the last action taken on it (None:
    none was): the queue reads it from the incident's row, not its history."""
    return Status.OPEN if kind is None else _AFTER[kind]


def last_action_for(status: Status) -> ActionKind | None:
    """The last action an incident of ``status`` had taken on it (None: none yet)."""
    return next((kind for kind, after in _AFTER.items() if after is status), None)


def left_text(left: timedelta | None) -> str:
    """``5h 07m``, or ``OVERDUE by 1h 30m``; empty when there is no clock."""
    if left is None:
        return ""
    hours, rest = divmod(abs(int(left.total_seconds())), 3600)
    text = f"{hours}h {rest // 60:02d}m"
    return f"OVERDUE by {text}" if left < timedelta(0) else text
