"""Each rule of the contract's catalogue, firing and not firing at its boundary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline.packs import pack_text
from pipeline.policy.pack import parse_pack
from schemas.decisions import Decision
from tests.factory import (
    NEXT_SCHOOL,
    census,
    consent_given,
    consent_withdrawn,
    destroyed,
    left,
    referral,
    transfer,
    upn,
)

Last = Callable[..., Decision]


def rules(decision: Decision) -> list[str]:
    return [r.value for r in decision.rules]


def consent_referral(**kw: Any) -> dict[str, Any]:
    kw.setdefault("lawful_basis", "consent")
    kw.setdefault("special_condition", "9.2.a")
    kw.setdefault("consent_ref", "C-1")
    kw.setdefault("categories", ["personal", "medical"])
    return referral(**kw)


class TestEventInvalid:
    def test_a_missing_required_field_is_rejected_naming_the_field(self, last: Last) -> None:
        event = census(pupils=[{"upn": upn(1)}])
        del event["data"]["channel"]
        decision = last(event)
        assert (decision.decision, rules(decision)) == ("rejected", ["event.invalid"])
        assert decision.reasons == ("data.channel: missing",)

    def test_an_unknown_type_is_rejected(self, last: Last) -> None:
        decision = last({**census(), "type": "uk.school.pupil.teleported.v1"})
        assert rules(decision) == ["event.invalid"]
        assert decision.reasons[0].startswith("type: not an event type")

    def test_a_time_without_utc_offset_is_rejected(self, last: Last) -> None:
        decision = last(census(time="2026-07-21T09:30:00"))
        assert rules(decision) == ["event.invalid"]
        assert "time: must be an RFC 3339 timestamp" in decision.reasons[0]

    def test_a_transfer_of_two_pupils_is_rejected(self, last: Last) -> None:
        decision = last(transfer(pupils=[{"upn": upn(1)}, {"upn": upn(2)}]))
        assert rules(decision) == ["event.invalid"]
        assert decision.reasons[0].startswith("data.pupils:")

    def test_a_census_of_many_pupils_is_well_formed(self, last: Last) -> None:
        decision = last(census(pupils=[{"upn": upn(i)} for i in range(30)]))
        assert decision.decision == "allowed"

    def test_unknown_envelope_attributes_are_ignored(self, last: Last) -> None:
        decision = last(census(traceparent="00-abc", schoolyear="2026"))
        assert decision.decision == "allowed"

    def test_an_invalid_event_reports_no_other_rule(self, last: Last) -> None:
        event = census(recipient="agency:nobody", pupils=[{"upn": "not-a-upn"}])
        event["data"]["lawful_basis"] = "because"
        assert rules(last(event)) == ["event.invalid"]

    def test_a_date_of_birth_in_another_format_is_rejected(self, last: Last) -> None:
        decision = last(census(pupils=[{"upn": upn(1), "dob": "21/07/2015"}]))
        assert decision.reasons == ("data.pupils[0].dob: must be a date written YYYY-MM-DD",)


class TestEventIdReused:
    def test_the_rejection_concerns_the_arrival_only(self, policy: Any) -> None:
        from pipeline.engine import Engine
        from tests.factory import line

        engine = Engine(policy)
        first = census()
        second = {**census(categories=["attendance"]), "id": first["id"]}
        engine.process(line(first), 1)
        (outcome,) = engine.process(line(second), 2)
        assert rules(outcome.decision) == ["event.id_reused"]
        assert outcome.decision.decision == "rejected"
        assert not outcome.recorded
        assert engine.current(first["id"]).decision == "allowed"  # type: ignore[union-attr]

    def test_the_same_id_with_the_same_content_is_a_duplicate(self, policy: Any) -> None:
        from pipeline.engine import Engine
        from tests.factory import line

        engine = Engine(policy)
        event = census()
        engine.process(line(event), 1)
        (outcome,) = engine.process(line(event), 2)
        assert outcome.kind == "duplicate"

    def test_key_order_and_spacing_do_not_make_content_different(self, policy: Any) -> None:
        import json

        from pipeline.engine import Engine

        engine = Engine(policy)
        event = census()
        engine.process(json.dumps(event).encode(), 1)
        reordered = json.dumps(dict(reversed(list(event.items()))), indent=2).encode()
        (outcome,) = engine.process(reordered, 2)
        assert outcome.kind == "duplicate"


class TestPupilInvalidUpn:
    def test_a_wrong_check_letter_is_rejected(self, last: Last) -> None:
        good = upn(1)
        bad = ("A" if good[0] != "A" else "B") + good[1:]
        decision = last(census(pupils=[{"upn": bad}]))
        assert (decision.decision, rules(decision)) == ("rejected", ["pupil.invalid_upn"])
        assert decision.reasons == ("data.pupils[0].upn has the wrong check letter",)
        assert bad not in decision.reasons[0]

    def test_an_la_number_that_is_not_a_real_la_is_rejected(self, last: Last) -> None:
        decision = last(census(pupils=[{"upn": upn(1, la=999)}]))
        assert decision.reasons == (
            "data.pupils[0].upn has an LA number that is not a real local authority",
        )

    def test_a_upn_of_twelve_characters_is_rejected(self, last: Last) -> None:
        decision = last(census(pupils=[{"upn": upn(1)[:12]}]))
        assert rules(decision) == ["pupil.invalid_upn"]

    def test_a_temporary_upn_is_valid(self, last: Last) -> None:
        temporary = upn(5, temporary=True)
        assert temporary[-1].isalpha()
        assert last(census(pupils=[{"upn": temporary}])).decision == "allowed"

    def test_a_lifecycle_event_with_an_invalid_upn_is_rejected(self, last: Last) -> None:
        decision = last(left(pupil="X123"))
        assert rules(decision) == ["pupil.invalid_upn"]
        assert decision.reasons == ("data.upn is not 13 characters long",)

    def test_only_the_invalid_pupil_of_a_census_is_named(self, last: Last) -> None:
        pupils = [{"upn": upn(i)} for i in range(5)]
        pupils[3] = {"upn": "B801200005002"}
        decision = last(census(pupils=pupils))
        assert decision.reasons == ("data.pupils[3].upn has the wrong check letter",)


class TestRecipientUnknown:
    def test_an_agency_not_in_the_registry_is_review(self, last: Last) -> None:
        decision = last(referral(recipient="agency:tutoring-ltd"))
        assert (decision.decision, rules(decision)) == ("review", ["recipient.unknown"])
        assert "'agency:tutoring-ltd'" in decision.reasons[0]

    def test_a_school_urn_of_five_digits_is_unknown(self, last: Last) -> None:
        assert rules(last(transfer(recipient="school:11651"))) == [
            "recipient.unknown",
            "transfer.no_destination",
        ]

    def test_any_school_with_a_six_digit_urn_is_known(self, last: Last) -> None:
        decision = last(left(destination="school:999999"), transfer(recipient="school:999999"))
        assert decision.decision == "allowed"

    def test_the_rules_on_the_recipients_row_are_not_evaluated(self, last: Last) -> None:
        event = referral(
            recipient="agency:tutoring-ltd",
            categories=["behaviour", "sen"],
            special_condition="9.2.j",
            lawful_basis="contract",
            channel="post",
        )
        assert rules(last(event)) == ["recipient.unknown"]


class TestRecipientNotPermitted:
    @pytest.mark.parametrize(
        "event",
        [
            census(recipient=NEXT_SCHOOL),
            transfer(recipient="dfe"),
            transfer(recipient="agency:school-nursing"),
            referral(recipient="dfe"),
        ],
        ids=["census to a school", "transfer to dfe", "transfer to an agency", "referral to dfe"],
    )
    def test_a_known_recipient_without_a_row_for_the_type_is_a_breach(
        self, last: Last, event: dict[str, Any]
    ) -> None:
        decision = last(left(), event)
        assert decision.decision == "breach"
        assert "recipient.not_permitted" in rules(decision)

    def test_the_la_may_receive_referrals(self, last: Last) -> None:
        assert last(referral(recipient="la:850")).decision == "allowed"

    def test_the_rules_on_the_recipients_row_are_not_evaluated(self, last: Last) -> None:
        event = census(
            recipient=NEXT_SCHOOL,
            categories=["behaviour"],
            lawful_basis="consent",
            consent_ref=None,
            channel="post",
        )
        assert rules(last(event)) == ["consent.missing", "recipient.not_permitted"]


class TestCategoryUnknown:
    def test_a_category_the_policy_does_not_define_is_review(self, last: Last) -> None:
        decision = last(census(categories=["personal", "shoe_size"]))
        assert (decision.decision, rules(decision)) == ("review", ["category.unknown"])
        assert decision.reasons == ("category 'shoe_size' is not defined by the policy",)

    def test_defined_categories_are_not_unknown(self, last: Last) -> None:
        assert last(census(categories=["personal", "attendance"])).decision == "allowed"


class TestCategoryNotPermitted:
    def test_nationality_in_a_census_is_a_breach(self, last: Last) -> None:
        decision = last(census(categories=["personal", "nationality"]))
        assert (decision.decision, rules(decision)) == ("breach", ["category.not_permitted"])
        assert decision.reasons == ("dfe may not receive nationality in a census",)

    def test_every_category_the_row_lists_is_permitted(self, last: Last) -> None:
        categories = [
            "personal",
            "characteristics",
            "attendance",
            "exclusions",
            "assessment",
            "travel",
        ]
        assert last(census(categories=categories)).decision == "allowed"


class TestBasisNotPermitted:
    def test_public_task_for_a_census_is_a_breach(self, last: Last) -> None:
        decision = last(census(lawful_basis="public_task"))
        assert (decision.decision, rules(decision)) == ("breach", ["basis.not_permitted"])
        assert "'public_task'" in decision.reasons[0]

    def test_a_listed_basis_is_permitted(self, last: Last) -> None:
        assert last(referral(recipient="la:850", lawful_basis="vital_interests")).decision == (
            "allowed"
        )


class TestSpecialNoCondition:
    def test_a_special_category_without_a_condition_is_a_breach(self, last: Last) -> None:
        decision = last(census(categories=["personal", "sen"]))
        assert (decision.decision, rules(decision)) == ("breach", ["special.no_condition"])

    def test_a_condition_the_recipient_may_not_rely_on_is_a_breach(self, last: Last) -> None:
        decision = last(census(categories=["sen"], special_condition="9.2.h"))
        assert rules(decision) == ["special.no_condition"]
        assert "9.2.h" in decision.reasons[0]

    def test_the_recipients_condition_is_permitted(self, last: Last) -> None:
        assert last(census(categories=["sen"], special_condition="9.2.g")).decision == "allowed"

    def test_no_special_category_needs_no_condition(self, last: Last) -> None:
        assert last(census(categories=["personal"])).decision == "allowed"

    def test_an_unknown_recipient_still_needs_a_condition(self, last: Last) -> None:
        decision = last(referral(recipient="agency:unlisted", categories=["medical"]))
        assert rules(decision) == ["recipient.unknown", "special.no_condition"]

    def test_an_unknown_recipient_with_any_condition_is_not_checked(self, last: Last) -> None:
        event = referral(
            recipient="agency:unlisted", categories=["medical"], special_condition="9.2.j"
        )
        assert rules(last(event)) == ["recipient.unknown"]


class TestConsentMissing:
    def test_consent_relied_on_without_a_ref_is_a_breach(self, last: Last) -> None:
        decision = last(consent_referral(consent_ref=None))
        assert rules(decision) == ["consent.missing"]
        assert decision.reasons == ("consent is relied on but the event gives no consent_ref",)

    def test_consent_never_given_is_a_breach(self, last: Last) -> None:
        decision = last(consent_referral())
        assert (decision.decision, rules(decision)) == ("breach", ["consent.missing"])

    def test_consent_given_at_the_same_instant_counts(self, last: Last) -> None:
        given = consent_given(time="2026-07-21T08:30:00Z")
        assert last(given, consent_referral(time="2026-07-21T09:30:00+01:00")).decision == (
            "allowed"
        )

    def test_consent_given_a_second_later_does_not_count(self, last: Last) -> None:
        given = consent_given(time="2026-07-21T08:30:01Z")
        decision = last(given, consent_referral(time="2026-07-21T09:30:00+01:00"))
        assert rules(decision) == ["consent.missing"]

    def test_consent_for_another_recipient_does_not_count(self, last: Last) -> None:
        given = consent_given(recipients=["agency:family-support"])
        assert rules(last(given, consent_referral())) == ["consent.missing"]

    def test_consent_must_cover_every_category_shared(self, last: Last) -> None:
        given = consent_given(categories=["personal"])
        assert rules(last(given, consent_referral())) == ["consent.missing"]

    def test_another_pupils_consent_does_not_count(self, last: Last) -> None:
        given = consent_given(pupil=upn(2))
        assert rules(last(given, consent_referral(pupils=[{"upn": upn(1)}]))) == ["consent.missing"]

    def test_explicit_consent_condition_relies_on_consent(self, last: Last) -> None:
        event = consent_referral(lawful_basis="public_task", special_condition="9.2.a")
        assert rules(last(event)) == ["consent.missing"]

    def test_no_consent_is_needed_when_none_is_relied_on(self, last: Last) -> None:
        event = referral(categories=["medical"], special_condition="9.2.h")
        assert last(event).decision == "allowed"

    def test_a_consent_timed_after_the_event_re_decides_nothing(self, last: Last) -> None:
        referral_event = consent_referral(time="2026-07-21T09:30:00+01:00")
        later = consent_given(time="2026-07-22T09:30:00+01:00")
        assert rules(last(later, referral_event)) == ["consent.missing"]


class TestConsentWithdrawn:
    def test_consent_withdrawn_before_the_event_is_a_breach(self, last: Last) -> None:
        decision = last(consent_given(), consent_withdrawn(), consent_referral())
        assert (decision.decision, rules(decision)) == ("breach", ["consent.withdrawn"])

    def test_withdrawal_at_the_same_instant_counts(self, last: Last) -> None:
        at = "2026-07-21T09:30:00+01:00"
        decision = last(consent_given(), consent_withdrawn(time=at), consent_referral(time=at))
        assert rules(decision) == ["consent.withdrawn"]

    def test_withdrawal_after_the_event_does_not_count(self, last: Last) -> None:
        withdrawal = consent_withdrawn(time="2026-07-21T09:30:01+01:00")
        event = consent_referral(time="2026-07-21T09:30:00+01:00")
        assert last(consent_given(), withdrawal, event).decision == "allowed"

    def test_withdrawing_another_consent_does_not_count(self, last: Last) -> None:
        decision = last(consent_given(), consent_withdrawn(ref="C-2"), consent_referral())
        assert decision.decision == "allowed"


class TestTransferNoDestination:
    def test_a_transfer_without_a_leaving_fact_is_review(self, last: Last) -> None:
        decision = last(transfer())
        assert (decision.decision, rules(decision)) == ("review", ["transfer.no_destination"])

    def test_a_leaving_fact_timed_after_the_transfer_does_not_count(self, last: Last) -> None:
        fact = left(time="2026-07-21T09:30:01+01:00")
        assert rules(last(fact, transfer(time="2026-07-21T09:30:00+01:00"))) == [
            "transfer.no_destination"
        ]

    def test_an_unknown_destination_is_review_and_never_wrong(self, last: Last) -> None:
        decision = last(left(destination="unknown"), transfer(recipient="school:116999"))
        assert rules(decision) == ["transfer.no_destination"]

    def test_a_recorded_destination_satisfies_it(self, last: Last) -> None:
        assert last(left(), transfer()).decision == "allowed"


class TestTransferWrongDestination:
    def test_a_transfer_to_another_school_is_a_breach(self, last: Last) -> None:
        decision = last(left(), transfer(recipient="school:116999"))
        assert (decision.decision, rules(decision)) == ("breach", ["transfer.wrong_destination"])
        assert decision.reasons == (
            "sent to school:116999 but the recorded destination is school:116512",
        )

    @pytest.mark.parametrize(
        ("recipient", "with_it"),
        [
            ("agency:school-nursing", "recipient.not_permitted"),
            ("la:850", "recipient.not_permitted"),
            ("dfe", "recipient.not_permitted"),
            ("school:12345", "recipient.unknown"),
            ("agency:unheard-of", "recipient.unknown"),
        ],
    )
    def test_a_transfer_to_anything_but_the_destination_school_is_a_breach(
        self, last: Last, recipient: str, with_it: str
    ) -> None:
        decision = last(left(destination="school:116999"), transfer(recipient=recipient))
        assert decision.decision == "breach"
        assert rules(decision) == sorted([with_it, "transfer.wrong_destination"])
        assert f"sent to {recipient} but the recorded destination is school:116999" in (
            decision.reasons
        )

    def test_the_latest_leaving_fact_decides_the_destination(self, last: Last) -> None:
        first = left(destination="school:116999", time="2026-07-16T10:00:00+01:00")
        second = left(destination=NEXT_SCHOOL, time="2026-07-17T10:00:00+01:00")
        assert last(first, second, transfer()).decision == "allowed"


class TestTransferLate:
    # Left on Wednesday 2026-07-01: the 15th school day after is Wednesday 2026-07-22.
    def test_the_fifteenth_school_day_is_in_time(self, last: Last) -> None:
        event = transfer(time="2026-07-22T16:00:00+01:00")
        assert last(
            left(left_on="2026-07-01", time="2026-07-01T15:00:00+01:00"), event
        ).decision == ("allowed")

    def test_the_sixteenth_school_day_is_late(self, last: Last) -> None:
        event = transfer(time="2026-07-23T09:00:00+01:00")
        decision = last(left(left_on="2026-07-01", time="2026-07-01T15:00:00+01:00"), event)
        assert (decision.decision, rules(decision)) == ("review", ["transfer.late"])
        assert decision.reasons == (
            "sent 16 school days after pupils[0] left on 2026-07-01 (limit 15)",
        )

    def test_the_events_date_is_taken_in_its_own_offset(self, last: Last) -> None:
        # 2026-07-22T23:30Z, but the 23rd in the event's own offset.
        event = transfer(time="2026-07-23T00:30:00+01:00")
        decision = last(left(left_on="2026-07-01", time="2026-07-01T15:00:00+01:00"), event)
        assert rules(decision) == ["transfer.late"]

    def test_a_weekend_adds_no_school_days(self, last: Last) -> None:
        # Friday 2026-07-24 is day 17; Saturday 25 and Sunday 26 add nothing.
        fact = left(left_on="2026-07-03", time="2026-07-03T15:00:00+01:00")
        on_saturday = transfer(time="2026-07-25T09:00:00+01:00")  # day 15 after Friday 3rd
        assert last(fact, on_saturday).decision == "allowed"

    def test_closure_dates_in_the_policy_do_not_count(self, policy: Any) -> None:
        from pipeline.engine import Engine
        from tests.factory import line

        text, _ = pack_text()
        closed = parse_pack(text.replace("closure_dates: []", "closure_dates: [2026-07-06]"), "t")
        engine = Engine(closed)
        engine.process(line(left(left_on="2026-07-01", time="2026-07-01T15:00:00+01:00")))
        event = transfer(time="2026-07-23T09:00:00+01:00")
        engine.process(line(event))
        assert engine.current(event["id"]).decision == "allowed"  # type: ignore[union-attr]


class TestRetentionExpired:
    def test_attendance_on_the_last_day_of_six_years_is_kept(self, last: Last) -> None:
        event = census(categories=["attendance"], oldest_record={"attendance": "2020-07-21"})
        assert last(event).decision == "allowed"

    def test_attendance_a_day_past_six_years_is_a_breach(self, last: Last) -> None:
        decision = last(
            census(categories=["attendance"], oldest_record={"attendance": "2020-07-20"})
        )
        assert (decision.decision, rules(decision)) == ("breach", ["retention.expired"])
        assert "attendance records from 2020-07-20" in decision.reasons[0]

    def test_sen_counts_thirty_one_years_from_birth(self, last: Last) -> None:
        on_time = census(
            categories=["sen"],
            special_condition="9.2.g",
            pupils=[{"upn": upn(1), "dob": "1995-07-21"}],
        )
        too_old = census(
            categories=["sen"],
            special_condition="9.2.g",
            pupils=[{"upn": upn(1), "dob": "1995-07-20"}],
        )
        assert last(on_time).decision == "allowed"
        assert rules(last(too_old)) == ["retention.expired"]

    def test_other_categories_count_a_year_from_leaving(self, last: Last) -> None:
        fact = left(left_on="2025-07-20", destination="unknown", time="2025-07-20T15:00:00+01:00")
        kept = left(left_on="2025-07-21", destination="unknown", time="2025-07-21T15:00:00+01:00")
        assert rules(last(fact, referral(categories=["personal"]))) == ["retention.expired"]
        assert last(kept, referral(categories=["personal"])).decision == "allowed"

    def test_a_year_from_a_leap_day_ends_on_the_28th(self, last: Last) -> None:
        fact = left(left_on="2024-02-29", destination="unknown", time="2024-02-29T15:00:00Z")
        assert last(fact, referral(time="2025-02-28T10:00:00Z")).decision == "allowed"
        assert rules(last(fact, referral(time="2025-03-01T10:00:00Z"))) == ["retention.expired"]

    def test_an_unknown_start_date_is_not_violated(self, last: Last) -> None:
        assert last(census(categories=["attendance", "personal"])).decision == "allowed"

    def test_a_census_where_one_pupil_of_many_is_too_old_is_a_breach(self, last: Last) -> None:
        pupils = [{"upn": upn(i), "dob": "2015-01-01"} for i in range(12)]
        pupils[7] = {"upn": upn(7), "dob": "1990-01-01"}
        decision = last(census(categories=["sen"], special_condition="9.2.g", pupils=pupils))
        assert rules(decision) == ["retention.expired"]
        assert decision.reasons == ("sen of pupils[7] was kept past 31 years from birth",)

    def test_a_reason_counted_from_birth_gives_no_date(self, last: Last) -> None:
        """The period's end would give away the date of birth, in a hashed entry."""
        pupils = [{"upn": upn(1), "dob": "1990-03-17"}]
        decision = last(census(categories=["sen"], special_condition="9.2.g", pupils=pupils))
        assert rules(decision) == ["retention.expired"]
        assert not any(ch.isdigit() for ch in decision.reasons[0].split("past 31 years")[1])
        assert "1990" not in decision.reasons[0] and "2021" not in decision.reasons[0]

    def test_transfers_are_checked_too(self, last: Last) -> None:
        event = transfer(categories=["attendance"], oldest_record={"attendance": "2019-01-01"})
        assert "retention.expired" in rules(last(left(), event))


class TestRecordDestroyed:
    def test_sharing_after_the_whole_record_was_destroyed_is_a_breach(self, last: Last) -> None:
        decision = last(destroyed(categories=["*"]), referral())
        assert (decision.decision, rules(decision)) == ("breach", ["record.destroyed"])

    def test_only_the_destroyed_categories_count(self, last: Last) -> None:
        fact = destroyed(categories=["medical"])
        assert last(fact, referral(categories=["personal"])).decision == "allowed"
        decision = last(
            fact, referral(categories=["personal", "medical"], special_condition="9.2.h")
        )
        assert rules(decision) == ["record.destroyed"]
        assert decision.reasons[0].startswith("medical of pupils[0] was recorded destroyed")

    def test_a_destruction_timed_after_the_event_does_not_count(self, last: Last) -> None:
        fact = destroyed(time="2026-07-22T09:00:00+01:00")
        assert last(fact, referral(time="2026-07-21T09:00:00+01:00")).decision == "allowed"

    def test_one_pupil_of_a_census_with_a_destroyed_record_breaches(self, last: Last) -> None:
        pupils = [{"upn": upn(i)} for i in range(4)]
        decision = last(destroyed(pupil=upn(2)), census(pupils=pupils))
        assert decision.reasons[0].startswith("personal of pupils[2]")


class TestChannelNotPermitted:
    def test_a_census_by_email_is_a_breach(self, last: Last) -> None:
        decision = last(census(channel="email"))
        assert (decision.decision, rules(decision)) == ("breach", ["channel.not_permitted"])

    def test_the_rows_channels_are_permitted(self, last: Last) -> None:
        assert last(left(), transfer(channel="secure_email")).decision == "allowed"

    def test_plain_email_is_never_used_for_a_special_category(self) -> None:
        from pipeline.engine import Engine
        from tests.factory import line

        text, _ = pack_text()
        lax = parse_pack(
            text.replace(
                "channels: [secure_email, portal]", "channels: [secure_email, portal, email]"
            ),
            "lax",
        )
        engine = Engine(lax)
        plain = referral(recipient="la:850", channel="email", categories=["personal"])
        special = referral(
            recipient="la:850", channel="email", categories=["medical"], special_condition="9.2.h"
        )
        engine.process(line(plain))
        engine.process(line(special))
        assert engine.current(plain["id"]).decision == "allowed"  # type: ignore[union-attr]
        reasons = engine.current(special["id"]).reasons  # type: ignore[union-attr]
        assert reasons == ("plain email is never used for special category medical",)

    def test_an_unknown_recipient_is_not_checked(self, last: Last) -> None:
        assert rules(last(referral(recipient="agency:x", channel="post"))) == ["recipient.unknown"]


def test_the_decision_is_the_worst_verdict_and_lists_every_rule_sorted(last: Last) -> None:
    event = census(categories=["nationality", "shoe_size"], channel="post")
    decision = last(event)
    assert decision.decision == "breach"
    assert rules(decision) == [
        "category.not_permitted",
        "category.unknown",
        "channel.not_permitted",
    ]
    assert len(decision.reasons) == 3
