"""The catalogue of plain names (pipeline.shown): what the desk, the reports and the
notices call each value the ledger holds by an id."""

from __future__ import annotations

import re
from datetime import date

import pytest

from pipeline.incidents.lifecycle import ActionKind, Risk, Status
from pipeline.ledger.reading.asking import KINDS
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Schools
from pipeline.shown import (
    ACTIONS,
    BASES,
    CHANNELS,
    CONDITIONS,
    EVENTS,
    RISKS,
    RULES,
    STATUSES,
    Naming,
    category_name,
    day,
    install,
    reason_said,
    recipient_name,
    when,
)
from pipeline.shown import KINDS as KIND_NAMES
from schemas.alerts import MERGE_DELAY_MISSED_CAUSE, RETENTION_DUE_CAUSE, WITNESS_REFUSED_CAUSE
from schemas.decisions import RuleId
from schemas.events import EVENT_TYPES, Channel, LawfulBasis, SpecialCondition


@pytest.mark.parametrize(
    ("table", "ids"),
    [
        (RULES, [*RuleId, WITNESS_REFUSED_CAUSE, MERGE_DELAY_MISSED_CAUSE, RETENTION_DUE_CAUSE]),
        (EVENTS, EVENT_TYPES),
        (BASES, list(LawfulBasis)),
        (CONDITIONS, list(SpecialCondition)),
        (CHANNELS, list(Channel)),
    ],
    ids=["rules", "event types", "lawful bases", "Art 9 conditions", "channels"],
)
def test_every_value_of_the_contract_has_a_plain_name(
    table: dict[str, str], ids: list[str]
) -> None:
    """Each rule of the catalogue (and each cause of the log's own alerts), event type,
    lawful basis, Art 9 condition and channel is named in words, not by its id."""
    assert set(table) == {str(i) for i in ids}
    assert not [name for name in table.values() if re.search(r"\w[._]\w", name)]


def test_every_kind_of_entry_has_a_plain_name() -> None:
    assert set(KIND_NAMES) == set(KINDS)


@pytest.mark.parametrize(
    ("table", "ids"),
    [(STATUSES, Status), (ACTIONS, ActionKind), (RISKS, Risk), (KIND_NAMES, KINDS)],
    ids=["statuses", "actions", "risks", "kinds of entry"],
)
def test_every_word_of_the_desk_that_is_not_a_word_has_a_name(
    table: dict[str, str], ids: list[str]
) -> None:
    """An incident's status, an action, a risk or an entry's kind written with an
    underscore ("subjects_notified") is named; one that is a word may stand as it is."""
    assert not [str(i) for i in ids if "_" in str(i) and str(i) not in table]


def test_a_recipient_is_named_as_the_sharing_schools_pack_names_it(policy: Policy) -> None:
    assert recipient_name("dfe", policy) == "Department for Education"
    assert recipient_name("agency:school-nursing", policy) == "School Nursing Service"
    assert recipient_name("la:850", policy) == "the school's local authority (LA 850)"


def test_a_recipient_the_pack_does_not_name_is_shown_as_its_id_says(policy: Policy) -> None:
    assert recipient_name("agency:unknown-helpers", policy) == "unknown helpers (an agency)"
    assert recipient_name("la:123", policy) == "local authority 123"
    assert recipient_name("someone", policy) == "someone"


def test_a_school_is_named_by_the_register_and_otherwise_by_its_urn(policy: Policy) -> None:
    """The pack names only the kind of recipient ("the school the pupil moves to"): the
    school itself is named by the register, or its URN."""
    schools = Schools(names={"116512": "Oakfield Primary"}, policies={"116512": policy})
    assert recipient_name("school:116512", policy, schools) == "Oakfield Primary (URN 116512)"
    assert recipient_name("school:116999", policy, schools) == "school 116999"
    assert Naming(policy, schools).school("116512") == "Oakfield Primary (URN 116512)"


def test_a_name_a_report_found_in_the_schools_own_pack_is_kept(policy: Policy) -> None:
    assert Naming(policy).recipient("agency:x", named="Their name") == "Their name"
    assert Naming(policy).recipient("school:116999", named="any school") == "school 116999"


def test_a_ledger_time_is_shown_on_the_schools_clock() -> None:
    assert when("2025-10-16T12:30:00.000000Z") == "Thu 16 Oct 2025, 13:30 BST"
    assert when("2025-12-16T12:30:00+00:00") == "Tue 16 Dec 2025, 12:30 GMT"
    assert when(None) == "\u2013"


def test_a_day_is_shown_as_a_school_writes_it() -> None:
    assert day("2025-10-16") == "Thu 16 Oct 2025"
    assert day(date(2026, 9, 1)) == "Tue 1 Sep 2026"
    assert day(date(2015, 3, 2), weekday=False) == "2 Mar 2015"


def test_a_category_is_named_in_words() -> None:
    assert category_name("sen") == "special educational needs (SEN)"
    assert category_name("medical") == "medical"
    assert category_name("*") == "every category"


def test_a_reason_counts_pupils_from_one_and_tells_times_on_the_schools_clock() -> None:
    reason = "consent 'C-1' for pupils[0] was withdrawn at 2026-07-10T09:00:00+01:00"
    assert reason_said(reason) == (
        "consent 'C-1' for pupil 1 was withdrawn at Fri 10 Jul 2026, 09:00 BST"
    )
    assert reason_said("pupils[2] left on 2026-06-01") == "pupil 3 left on Mon 1 Jun 2026"


def test_a_reason_names_the_bases_conditions_and_channels_it_quotes() -> None:
    reason = (
        "lawful basis 'legitimate_interests' is not allowed for agency:school-nursing "
        "(allowed: consent, public_task); condition 9.2.b is not allowed (allowed: 9.2.h); "
        "channel 'email' is not allowed (allowed: secure_email, in_person)"
    )
    assert reason_said(reason) == (
        "lawful basis 'legitimate interests' is not allowed for agency:school-nursing "
        "(allowed: consent, public task); condition employment and social protection is "
        "not allowed (allowed: health or social care); channel 'email' is not allowed "
        "(allowed: secure email, in person)"
    )


def test_a_reason_quoting_a_packs_placeholder_shows_no_braces() -> None:
    said = reason_said("recipient 'x' is not a school:{URN} with a 6-digit URN")
    assert said == "recipient 'x' is not a school:URN with a 6-digit URN"


def test_the_pages_and_the_reports_share_one_set_of_filters() -> None:
    from pipeline.api.pages import templates
    from pipeline.reports.formats import html

    for name in ("uk", "what", "rule", "basis", "art9", "channel", "categories"):
        assert templates.env.filters[name] is html.filters[name], name
    why = "{{ 'covering agency:school-nursing on 2026-07-21' | reason }}"
    assert templates.env.from_string(why).render() == html.from_string(why).render()


def test_a_notice_says_its_cause_recipient_and_school_in_the_desks_words(
    policy: Policy,
) -> None:
    """The email a DPO receives names the cause, the recipient (as the school's pack does)
    and the school; the webhook's JSON keeps the ids beside those words."""
    from datetime import UTC, datetime

    from pipeline.incidents.lifecycle import Cause, Incident
    from pipeline.incidents.notify import Smtp, email_message, notice
    from schemas.alerts import Severity

    cause = Cause("consent.missing", "agency:school-nursing", date(2026, 7, 21), "116234")
    incident = Incident(cause, Severity.HIGH, datetime(2026, 7, 21, 9, tzinfo=UTC), True, (1,))
    schools = Schools(names={"116234": "Westfields Junior"}, policies={"116234": policy})
    sent = notice(1, incident, ["key"], "https://desk", Naming(policy, schools))
    assert sent["rule"] == "consent.missing" and sent["recipient"] == "agency:school-nursing"
    message = email_message(Smtp("127.0.0.1"), "dpo@school.example", sent)
    assert message["Subject"] == (
        "[sharing-audit] HIGH breach: no consent on record, to School Nursing Service"
    )
    assert "Cause: no consent on record, to School Nursing Service, at Westfields Junior" in (
        message.get_content()
    )


def test_a_reason_on_a_page_names_the_recipients_it_quotes(policy: Policy) -> None:
    from jinja2 import Environment

    env = Environment(autoescape=True)
    install(env)
    page = env.from_string("{{ why | reason }}").render(
        why="no consent 'C-1' for pupils[0] covering agency:school-nursing and medical",
        naming=Naming(policy),
    )
    assert (
        page == "no consent &#39;C-1&#39; for pupil 1 covering School Nursing Service and medical"
    )
