"""The privacy notice against practice, over a simulated school year on both databases:
the recipients the school shared with that its notice in force did not name are exactly
those the year was made to share with off policy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.reading.reads import Requester
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.notices import publish_notice, published_notices
from pipeline.policy.notice import notice_of
from pipeline.policy.pack import Policy, compile_pack
from pipeline.policy.schools import Controller
from pipeline.reports.notice_check import audited_notice_check, notice_now
from pipeline.simulate import Expected, Line, Simulator
from schemas.events import REFERRAL
from tests.integration.year import write_lines

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCHOOL = Controller(None, "Westfields Junior School", "Westfields Road", "dpo@westfields.example")
#: Off the pack: recipients it does not know, each sent a referral on these days.
INJECTED = {
    "agency:private-tutoring": ("2025-11-12", "2026-03-04"),
    "agency:holiday-club": ("2026-06-10",),
}
YEAR_FROM, YEAR_TO = "2025-09-01T00:00:00Z", "2026-09-01T00:00:00Z"
OPERATOR = Requester("dana", "database", "cli")


def off_policy(simulator: Simulator, pupil: str, urn: str) -> list[Line]:
    """Referrals to the recipients the pack does not know, as an MIS would send them."""
    lines = []
    for recipient, days in INJECTED.items():
        for day in days:
            at = datetime.fromisoformat(f"{day}T10:00:00+00:00")
            data: dict[str, Any] = {
                "recipient": recipient,
                "pupils": [{"upn": pupil}],
                "categories": ["personal", "assessment"],
                "lawful_basis": "public_task",
                "channel": "secure_email",
            }
            event = simulator._event(REFERRAL, urn, at, data)
            lines.append(
                Line(at, 0, event, Expected(event["id"], "review", ("recipient.unknown",)))
            )
    return lines


@pytest.fixture
def year(db_url: str, policy: Policy) -> Iterator[tuple[Ledger, list[Line]]]:
    """A year of 200 pupils shared within the pack, and the off-policy referrals."""
    ledger = Ledger.open(db_url)
    schema.upgrade(ledger.engine)
    simulator = Simulator(200, violation_rate=0.0, seed=3)
    lines = simulator.run()
    pupil = simulator.pupils[0]
    lines = sorted(lines + off_policy(simulator, pupil.upn, pupil.urn), key=lambda n: n.at)
    write_lines(ledger, policy, lines)
    yield ledger, lines
    ledger.engine.dispose()


def check(ledger: Ledger, policy: Policy) -> dict[str, Any]:
    report = audited_notice_check(
        ledger, OPERATOR, notice_now(policy, None, SCHOOL), YEAR_FROM, YEAR_TO, None, False
    )
    assert report is not None
    (row,) = report["schools"]
    assert isinstance(row, dict)
    return row


def test_the_recipients_not_named_are_exactly_those_shared_with_off_policy(
    year: tuple[Ledger, list[Line]], policy: Policy
) -> None:
    ledger, _ = year
    publish_notice(
        ledger, notice_of(policy, SCHOOL), by="dana", school=None, in_force_from=YEAR_FROM
    )
    row = check(ledger, policy)
    unnamed = {u["recipient"]: u["events"] for u in row["unnamed_recipients"]}
    assert unnamed == {recipient: len(days) for recipient, days in INJECTED.items()}
    assert row["unnamed_categories"] == []
    assert row["without_notice"] == 0
    assert row["changes"] == []


def test_recipients_the_notice_names_that_were_sent_nothing_are_listed(
    year: tuple[Ledger, list[Line]], policy: Policy
) -> None:
    ledger, lines = year
    publish_notice(
        ledger, notice_of(policy, SCHOOL), by="dana", school=None, in_force_from=YEAR_FROM
    )
    sent = {line.event["data"]["recipient"] for line in lines if "recipient" in line.event["data"]}
    named = set(policy.recipients)
    used = {policy.recipient_key(r) for r in sent} - {None}
    row = check(ledger, policy)
    assert {u["recipient"] for u in row["unused_recipients"]} == named - used
    assert "agency:hearing-impairment" in named - used  # the simulator never refers to them


def test_sharing_before_any_notice_was_in_force_is_counted_not_compared(
    year: tuple[Ledger, list[Line]], policy: Policy
) -> None:
    ledger, lines = year
    publish_notice(
        ledger,
        notice_of(policy, SCHOOL),
        by="dana",
        school=None,
        in_force_from="2026-01-01T00:00:00Z",
    )
    sharing = [
        n
        for n in lines
        if "recipient" in n.event["data"]
        and not n.redelivery
        and n.expected.decision != "rejected"
        and n.at < datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    ]
    row = check(ledger, policy)
    assert row["without_notice"] == len(sharing)
    assert {u["recipient"]: u["events"] for u in row["unnamed_recipients"]} == {
        "agency:private-tutoring": 1,  # its March referral; November's came before the notice
        "agency:holiday-club": 1,
    }


def test_a_category_sent_that_the_notice_does_not_say_is_listed_under_its_recipient(
    year: tuple[Ledger, list[Line]], policy: Policy
) -> None:
    """The notice in force said less than the pack permits (an older notice): what the
    school sent beyond it is named, though the pack allowed it."""
    ledger, _ = year
    older = notice_of(policy, SCHOOL)
    nursing = older["recipients"]["agency:school-nursing"]
    for sharing in nursing["sharing"]:
        sharing["categories"] = [c for c in sharing["categories"] if c != "medical"]
    publish_notice(ledger, older, by="dana", school=None, in_force_from=YEAR_FROM)
    row = check(ledger, policy)
    (beyond,) = row["unnamed_categories"]
    assert (beyond["recipient"], beyond["categories"]) == ("agency:school-nursing", ["medical"])
    assert any("School Nursing Service" in c and "medical" in c for c in row["changes"])


def test_a_pack_change_that_alters_the_notice_is_flagged_until_a_new_notice_is_published(
    year: tuple[Ledger, list[Line]], policy: Policy
) -> None:
    ledger, _ = year
    publish_notice(
        ledger, notice_of(policy, SCHOOL), by="dana", school=None, in_force_from=YEAR_FROM
    )
    recipients = dict(policy.spec.recipients)
    recipients.pop("agency:hearing-impairment")
    changed = compile_pack(policy.spec.model_copy(update={"recipients": recipients}))
    stricter = check(ledger, changed)["changes"]
    assert stricter == [
        "a recipient the pack no longer permits: Hearing impairment specialists "
        "(agency:hearing-impairment)"
    ]
    severity = policy.spec.severity.model_copy(update={"high_pupil_count": 99})
    unseen = compile_pack(policy.spec.model_copy(update={"severity": severity}))
    assert unseen.version != policy.version
    assert check(ledger, unseen)["changes"] == []  # the notice says nothing of severity
    publish_notice(
        ledger, notice_of(changed, SCHOOL), by="dana", school=None, in_force_from=YEAR_TO
    )
    assert check(ledger, changed)["changes"] == []


def test_publishing_a_notice_appends_an_entry_that_verify_accepts(
    year: tuple[Ledger, list[Line]], policy: Policy, db_url: str
) -> None:
    ledger, _ = year
    runner = CliRunner()
    published = runner.invoke(
        app, ["notice", "publish", "--db", db_url, "--from", "2025-09-01", "--by", "Dana"]
    )
    assert published.exit_code == 0, published.output
    with ledger.engine.connect() as connection:
        head = Ledger.head(connection)[0]
        (notice,) = published_notices(connection, head)
    assert (notice.by, notice.in_force_from) == ("Dana", "2025-08-31T23:00:00.000000Z")
    assert notice.says["pack"]["version"] == policy.version
    with ledger.engine.connect() as connection:
        assert verify(connection).fault is None
    checked = runner.invoke(
        app, ["notice", "check", "--db", db_url, "--since", "2025-09-01", "--until", "2026-09-01"]
    )
    assert checked.exit_code == 1  # it found recipients the notice does not name
    assert "agency:private-tutoring" in checked.output
    assert "agency:holiday-club" in checked.output


def test_on_the_simulators_own_violations_it_finds_exactly_what_was_injected(
    db_url: str, policy: Policy
) -> None:
    """A year with the simulator's own violations (20%, a seed whose year breaks each
    rule below): the recipients not named, the purposes not given and the data not said
    are exactly those of the lines the simulator made to break recipient.unknown,
    recipient.not_permitted (a census sent to a school) and the category rules, as it
    knows by construction."""
    ledger = Ledger.open(db_url)
    schema.upgrade(ledger.engine)
    lines = write_lines(ledger, policy, Simulator(500, violation_rate=0.2, seed=4).run())
    publish_notice(
        ledger, notice_of(policy, SCHOOL), by="dana", school=None, in_force_from=YEAR_FROM
    )
    broke: dict[str, list[Line]] = {}
    for line in lines:
        if not line.redelivery and line.expected.rules:
            broke.setdefault(line.expected.rules[0], []).append(line)
    unknown: dict[str, int] = {}
    for line in broke.get("recipient.unknown", []):
        unknown[line.event["data"]["recipient"]] = (
            unknown.get(line.event["data"]["recipient"], 0) + 1
        )
    beyond: dict[str, set[str]] = {}
    for rule, extra in (
        ("category.not_permitted", "nationality"),
        ("category.unknown", "photographs"),
    ):
        for line in broke.get(rule, []):
            beyond.setdefault(line.event["data"]["recipient"], set()).add(extra)
    to_schools = len(broke.get("recipient.not_permitted", []))
    assert unknown and beyond and to_schools  # the year holds each kind of finding

    row = check(ledger, policy)
    assert {u["recipient"]: u["events"] for u in row["unnamed_recipients"]} == unknown
    assert {u["recipient"]: set(u["categories"]) for u in row["unnamed_categories"]} == beyond
    assert [(u["recipient"], u["event_type"], u["events"]) for u in row["unnamed_purposes"]] == [
        ("school:{URN}", "uk.school.census.submitted.v1", to_schools)
    ]
    ledger.engine.dispose()
