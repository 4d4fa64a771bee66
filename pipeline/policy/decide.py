"""``decide``: a pure function of (event, register as of the event's time, policy).

Being pure is what makes a decision replayable and explainable years later: the same
event, facts and policy version give the same decision, with no clock, database or
broker involved. The engine and the stream agents both call this one function.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.policy.intake import undecidable_reason
from pipeline.policy.pack import Policy
from pipeline.policy.rules import RULES_FOR_KIND, Case
from pipeline.register import Register, check_upn
from schemas.decisions import ALLOWED, Decision, RuleId
from schemas.events import SHARING_KIND, SHARING_MODELS, Event, SharingEvent


def upns_of(event: Event) -> list[str]:
    """The UPNs an event names, as given, in order."""
    if isinstance(event, SHARING_MODELS):
        return [p["upn"] for p in event.data.pupils]
    return [event.data.upn]


def upn_problems(event: Event) -> list[str]:
    """A reason for each invalid UPN in the event, naming its place, never its value."""
    if not isinstance(event, SHARING_MODELS):
        problem = check_upn(event.data.upn)[1]
        return [] if problem is None else [f"data.upn {problem}"]
    problems = []
    for i, pupil in enumerate(event.data.pupils):
        problem = check_upn(pupil["upn"])[1]
        if problem is not None:
            problems.append(f"data.pupils[{i}].upn {problem}")
    return problems


def build_case(
    event: SharingEvent, register: Register, policy: Policy, keys: Sequence[str] | None = None
) -> Case:
    """Everything the rules ask about a well-formed sharing event (``keys``: its pupils'
    keys, when already made)."""
    data = event.data
    kind = SHARING_KIND[event.type]
    recipient_key = policy.recipient_key(data.recipient)
    permission = policy.permission_for(recipient_key, kind)
    categories = list(dict.fromkeys(data.categories))
    known = [c for c in categories if c in policy.categories]
    return Case(
        event=event,
        kind=kind,
        policy=policy,
        # The facts the event's own school recorded: another school's never decide it.
        facts=[register.facts(event.urn, p["upn"]) for p in data.pupils]
        if keys is None
        else [register.facts_of(event.urn, key) for key in keys],
        recipient_key=recipient_key,
        permission=permission,
        known=known,
        unknown=[c for c in categories if c not in policy.categories],
        special=[c for c in known if c in policy.special],
        day=event.time.date(),
    )


def decide(
    event: Event, register: Register, policy: Policy, keys: Sequence[str] | None = None
) -> Decision:
    """The decision for a contract-valid event.

    ``event.invalid`` and ``event.id_reused`` are settled before an event exists (see
    ``intake`` and the engine); here an invalid UPN rejects the event, a lifecycle event
    is otherwise allowed, and a sharing event is judged by every policy rule.

    ``keys``, when given, are the event's pupils' keys, made by the caller from UPNs it
    found valid (the ledger writer checks and pseudonymises a batch's pupils once): their
    UPNs are not checked again, and their facts are looked up by key.
    """
    if keys is None:
        problems = upn_problems(event)
        if problems:
            return Decision.rejected(RuleId.PUPIL_INVALID_UPN, "; ".join(problems))
    if not isinstance(event, SHARING_MODELS):
        return ALLOWED
    case = build_case(event, register, policy, keys)
    violations: dict[RuleId, list[str]] = {}
    for rule_id, rule in RULES_FOR_KIND[case.kind]:
        reasons = rule(case)
        if reasons:
            violations[rule_id] = reasons
    return Decision.from_violations(violations)


def verdict_of(decision: Decision) -> tuple[str, tuple[str, ...]]:
    """What a DPO is alerted to: the decision and the rules it broke (reasons name times
    and facts that move with every late fact, and are not a change of verdict)."""
    return decision.decision.value, tuple(rule.value for rule in decision.rules)


def decision_for(
    event: Event, register: Register, policy: Policy, keys: Sequence[str] | None = None
) -> Decision:
    """``decide``, with an event that exposes a bug rejected as undecidable rather than
    raised: the one way the engine, and whatever replays its history, decide an event."""
    try:
        return decide(event, register, policy, keys)
    except Exception as exc:  # a bug the event exposes: the event is kept, not lost
        return Decision.rejected(RuleId.EVENT_INVALID, undecidable_reason(type(exc).__name__))
