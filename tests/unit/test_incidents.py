"""The breach desk's incidents: transitions, refusals, the 72-hour clock, grouping."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from pipeline.incidents.grouping import incidents_from
from pipeline.incidents.lifecycle import (
    Action,
    ActionKind,
    Cause,
    Incident,
    Risk,
    Status,
    TransitionRefused,
    left_text,
)
from pipeline.schooltime import shown_in_school_time
from schemas.alerts import Severity

DETECTED = datetime(2026, 10, 23, 9, 0, tzinfo=UTC)  # Friday, 10:00 BST
LATER = DETECTED + timedelta(hours=2)


def breach(*history: Action) -> Incident:
    cause = Cause("consent.missing", "agency:school-nursing", date(2026, 10, 23))
    return Incident(cause, Severity.HIGH, DETECTED, True, (1,), history)


def ack() -> Action:
    return Action(ActionKind.ACKNOWLEDGE, "dpo", LATER)


def assess(risk: Risk) -> Action:
    return Action(ActionKind.ASSESS, "dpo", LATER, risk=risk, reasons="medical notes sent")


def report() -> Action:
    return Action(ActionKind.REPORT, "dpo", LATER, ico_reference="ICO-1", reported_at=LATER)


def notify() -> Action:
    return Action(ActionKind.NOTIFY_SUBJECTS, "dpo", LATER)


def close() -> Action:
    return Action(ActionKind.CLOSE, "dpo", LATER, reasons="handled")


class TestTransitions:
    def test_a_new_incident_is_open(self) -> None:
        assert breach().status is Status.OPEN

    def test_acknowledging_an_open_incident(self) -> None:
        assert breach().taking(ack()).status is Status.ACKNOWLEDGED

    def test_assessing_an_acknowledged_incident_records_the_risk(self) -> None:
        assessed = breach(ack()).taking(assess(Risk.RISK))
        assert (assessed.status, assessed.risk) == (Status.ASSESSED, Risk.RISK)

    def test_reassessing_keeps_the_latest_risk(self) -> None:
        assert (
            breach(ack(), assess(Risk.RISK)).taking(assess(Risk.HIGH_RISK)).risk is Risk.HIGH_RISK
        )

    def test_reporting_an_assessed_breach(self) -> None:
        assert breach(ack(), assess(Risk.RISK)).taking(report()).status is Status.REPORTED

    def test_notifying_the_families_after_reporting_a_high_risk(self) -> None:
        reported = breach(ack(), assess(Risk.HIGH_RISK), report())
        assert reported.taking(notify()).status is Status.SUBJECTS_NOTIFIED

    def test_closing_a_breach_assessed_as_no_risk(self) -> None:
        assert breach(ack(), assess(Risk.NO_RISK)).taking(close()).status is Status.CLOSED

    def test_closing_a_reported_risk(self) -> None:
        assert breach(ack(), assess(Risk.RISK), report()).taking(close()).status is Status.CLOSED

    def test_closing_a_high_risk_once_the_families_are_notified(self) -> None:
        done = breach(ack(), assess(Risk.HIGH_RISK), report(), notify()).taking(close())
        assert done.status is Status.CLOSED

    def test_every_action_is_kept_in_order_with_who_and_when(self) -> None:
        done = breach().taking(ack()).taking(assess(Risk.NO_RISK)).taking(close())
        assert [(a.kind, a.by, a.at) for a in done.history] == [
            (ActionKind.ACKNOWLEDGE, "dpo", LATER),
            (ActionKind.ASSESS, "dpo", LATER),
            (ActionKind.CLOSE, "dpo", LATER),
        ]


class TestRefusals:
    @pytest.mark.parametrize("before", [(), (ack(),)])
    def test_an_unassessed_breach_cannot_be_closed(self, before: tuple[Action, ...]) -> None:
        with pytest.raises(TransitionRefused, match="assessed before it is closed"):
            breach(*before).taking(close())

    def test_a_high_risk_breach_cannot_be_closed_before_reporting_and_notifying(self) -> None:
        for history in ((ack(), assess(Risk.HIGH_RISK)), (ack(), assess(Risk.HIGH_RISK), report())):
            with pytest.raises(TransitionRefused, match="high-risk breach must be reported"):
                breach(*history).taking(close())

    def test_a_risk_cannot_be_closed_before_it_is_reported(self) -> None:
        with pytest.raises(TransitionRefused, match="reported to the ICO before closing"):
            breach(ack(), assess(Risk.RISK)).taking(close())

    @pytest.mark.parametrize("action", [ack(), assess(Risk.RISK), report(), notify(), close()])
    def test_nothing_can_be_done_to_a_closed_incident(self, action: Action) -> None:
        closed = breach(ack(), assess(Risk.NO_RISK), close())
        with pytest.raises(TransitionRefused, match="closed"):
            closed.taking(action)

    def test_an_open_incident_cannot_be_assessed_before_it_is_acknowledged(self) -> None:
        with pytest.raises(TransitionRefused, match="only an acknowledged incident"):
            breach().taking(assess(Risk.RISK))

    def test_an_assessment_needs_reasons(self) -> None:
        bare = Action(ActionKind.ASSESS, "dpo", LATER, risk=Risk.RISK, reasons=" ")
        with pytest.raises(TransitionRefused, match="reasons"):
            breach(ack()).taking(bare)

    def test_a_report_needs_the_ico_reference(self) -> None:
        bare = Action(ActionKind.REPORT, "dpo", LATER, reported_at=LATER)
        with pytest.raises(TransitionRefused, match="ICO's reference"):
            breach(ack(), assess(Risk.RISK)).taking(bare)

    def test_families_are_not_notified_for_a_risk_that_is_not_high(self) -> None:
        with pytest.raises(TransitionRefused, match="Art 34"):
            breach(ack(), assess(Risk.RISK), report()).taking(notify())

    def test_the_allowed_actions_follow_the_status(self) -> None:
        assert breach().allowed() == [ActionKind.ACKNOWLEDGE]
        assert breach(ack()).allowed() == [ActionKind.ASSESS]
        assert breach(ack(), assess(Risk.HIGH_RISK)).allowed() == [
            ActionKind.ASSESS,
            ActionKind.REPORT,
        ]


class TestTheClock:
    def test_the_deadline_is_72_real_hours_after_detection_across_the_end_of_bst(self) -> None:
        # Detected Friday 23 Oct 2026, 10:00 BST; the clocks go back on Sunday 25 Oct.
        deadline = breach().deadline
        assert deadline == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
        assert shown_in_school_time(deadline) == "Mon 26 Oct 2026, 09:00 GMT"

    def test_the_deadline_is_72_real_hours_across_the_start_of_bst(self) -> None:
        detected = datetime(2027, 3, 26, 10, 0, tzinfo=UTC)  # Friday, 10:00 GMT
        incident = Incident(breach().cause, Severity.HIGH, detected, True)
        assert incident.deadline is not None
        assert shown_in_school_time(incident.deadline) == "Mon 29 Mar 2027, 11:00 BST"

    def test_time_left_counts_down_and_goes_negative_when_overdue(self) -> None:
        incident = breach(ack())
        assert incident.time_left(DETECTED + timedelta(hours=70)) == timedelta(hours=2)
        assert not incident.overdue(DETECTED + timedelta(hours=72))
        assert incident.overdue(DETECTED + timedelta(hours=72, seconds=1))

    def test_the_clock_stops_once_reported(self) -> None:
        reported = breach(ack(), assess(Risk.RISK), report())
        assert reported.time_left(DETECTED + timedelta(days=9)) is None
        assert not reported.overdue(DETECTED + timedelta(days=9))

    def test_a_review_has_no_ico_clock(self) -> None:
        review = Incident(breach().cause, Severity.LOW, DETECTED, False)
        assert review.deadline is None and review.time_left(LATER) is None


class TestGrouping:
    @staticmethod
    def alert(
        seq: int,
        *,
        rules: list[str],
        recipient: str | None = "agency:school-nursing",
        recorded_at: str = "2026-10-23T09:00:00.000000Z",
        severity: str = "medium",
        decision: str = "breach",
        event_id: str | None = None,
    ) -> dict[str, object]:
        return {
            "seq": seq,
            "event_id": event_id or f"ev-{seq}",
            "rules": rules,
            "recipient": recipient,
            "recorded_at": recorded_at,
            "severity": severity,
            "decision": decision,
        }

    def test_witness_refusals_break_no_rule_and_are_an_incident_of_their_own(self) -> None:
        refusal = {
            **self.alert(7, rules=[], recipient=None, severity="high"),
            "kind": "witness_refusal",
        }
        incidents = incidents_from([self.alert(1, rules=["consent.missing"]), refusal])
        assert [(i.cause.rule, i.entries, i.breach) for i in incidents] == [
            ("consent.missing", (1,), True),
            ("log.witness_refused", (7,), True),
        ]

    def test_a_missed_merge_delay_breaks_no_rule_and_is_an_incident_of_its_own(self) -> None:
        missed = {
            **self.alert(9, rules=[], recipient=None, severity="high", decision="review"),
            "kind": "merge_delay_missed",
        }
        incidents = incidents_from([self.alert(1, rules=["consent.missing"]), missed])
        assert [(i.cause.rule, i.entries, i.breach, i.severity) for i in incidents] == [
            ("consent.missing", (1,), True, "medium"),
            ("log.merge_delay_missed", (9,), False, "high"),
        ]

    def test_the_same_mistake_at_two_schools_of_a_trust_is_two_incidents(self) -> None:
        first = {**self.alert(1, rules=["consent.missing"]), "school": "116234"}
        second = {**self.alert(2, rules=["consent.missing"]), "school": "135000"}
        incidents = incidents_from([first, second])
        assert [(i.cause.school, i.entries) for i in incidents] == [
            ("116234", (1,)),
            ("135000", (2,)),
        ]

    def test_alerts_with_the_same_rule_recipient_and_day_are_one_incident(self) -> None:
        [incident] = incidents_from(
            [
                self.alert(1, rules=["consent.missing"]),
                self.alert(
                    5,
                    rules=["consent.missing"],
                    recorded_at="2026-10-23T15:00:00.000000Z",
                    severity="high",
                ),
            ]
        )
        assert incident.entries == (1, 5)
        assert incident.severity is Severity.HIGH
        assert incident.detected_at == DETECTED

    def test_an_event_alerted_on_twice_counts_once_among_the_incidents_events(self) -> None:
        """A late fact that changed an event's rules alerts again on the same cause."""
        [incident] = incidents_from(
            [
                self.alert(1, rules=["consent.missing"], event_id="ev-a"),
                self.alert(2, rules=["consent.missing"], event_id="ev-b"),
                self.alert(9, rules=["consent.missing", "retention.expired"], event_id="ev-a"),
            ]
        )
        assert incident.entries == (1, 2, 9)
        assert incident.events == {"ev-a", "ev-b"}

    def test_another_recipient_rule_or_day_is_another_incident(self) -> None:
        incidents = incidents_from(
            [
                self.alert(1, rules=["consent.missing"]),
                self.alert(2, rules=["consent.missing"], recipient="la:850"),
                self.alert(3, rules=["channel.not_permitted"]),
                self.alert(4, rules=["consent.missing"], recorded_at="2026-10-23T23:30:00.000000Z"),
            ]
        )
        assert [i.entries for i in incidents] == [(1,), (2,), (3,), (4,)]

    def test_the_uk_day_decides_so_a_late_bst_evening_is_the_next_utc_day(self) -> None:
        # 23:30 UTC on 22 Oct is 00:30 BST on 23 Oct: the same UK day as 09:00 UTC on 23 Oct.
        [incident] = incidents_from(
            [
                self.alert(1, rules=["consent.missing"], recorded_at="2026-10-22T23:30:00.000000Z"),
                self.alert(2, rules=["consent.missing"]),
            ]
        )
        assert incident.cause.day == date(2026, 10, 23)

    def test_the_cause_is_the_rule_that_made_the_breach(self) -> None:
        [incident] = incidents_from(
            [self.alert(1, rules=["channel.not_permitted", "recipient.unknown"])]
        )
        assert incident.cause.rule == "channel.not_permitted"


class TestTimeLeft:
    def test_time_left_reads_in_hours_and_minutes_and_says_overdue(self) -> None:
        assert left_text(timedelta(hours=5, minutes=7, seconds=30)) == "5h 07m"
        assert left_text(-timedelta(hours=1, minutes=30)) == "OVERDUE by 1h 30m"
        assert left_text(None) == ""
