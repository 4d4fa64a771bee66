"""Erasing a pupil at their family's request (UK GDPR Art 17), as the DPO: refused, naming
every reason, while a retention period, an open incident or the old pseudonym key still
needs or reaches the data; once made, nothing finds the pupil by UPN, and the statement
for the family is given then and printed again by its reference alone."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.engine import Position
from pipeline.incidents.desk import incidents, open_incidents_of, take_action
from pipeline.incidents.lifecycle import Action, ActionKind, Risk
from pipeline.ledger.privacy.erasure import ErasureRefused, Needs, erase
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.store import IDENTITY, Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.pupils import NOBODY, Identity, finder
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.schooltime import school_day
from pipeline.users import Role, add_user
from tests.factory import census, left, line, upn
from tests.integration.breaches import KEY, breach_desk, ledger_with_breaches

pytestmark = pytest.mark.integration
runner = CliRunner()
ENV = {"SHARING_AUDIT_PSEUDONYM_KEY": KEY.hex(), "COLUMNS": "200"}
PSEUDONYMS = pseudonymiser(KEY)
SCHOOL = "116234"

#: A pupil who left in 2018, shared before: every period has ended; no incident.
GONE = upn(20)
#: A pupil still on roll.
ON_ROLL = upn(21)
#: A pupil who left, with SEN data kept 31 years from a known date of birth.
SEN_KNOWN = upn(22)
#: A pupil who left, with SEN data and no date of birth given.
SEN_UNKNOWN = upn(23)
GONE_BORN = "2005-04-11"
#: The confirmation the desk's second step posts.
YES = {"confirmed": "yes"}


def _events() -> list[dict[str, Any]]:
    long_ago = "2018-01-18T10:00:00+00:00"
    return [
        census(pupils=[{"upn": GONE, "dob": GONE_BORN}], time=long_ago),
        left(GONE, left_on="2018-07-20", time="2018-07-20T15:00:00+01:00"),
        census(pupils=[{"upn": ON_ROLL}], time="2026-01-15T10:00:00+00:00"),
        census(
            pupils=[{"upn": SEN_KNOWN, "dob": "2010-09-01"}, {"upn": SEN_UNKNOWN}],
            categories=["personal", "sen"],
            special_condition="9.2.g",
            time=long_ago,
        ),
        left(SEN_KNOWN, left_on="2018-07-20", time="2018-07-20T15:00:00+01:00"),
        left(SEN_UNKNOWN, left_on="2018-07-20", time="2018-07-20T15:00:00+01:00"),
    ]


def write(ledger: Ledger, events: Iterable[dict[str, Any]], policy: Policy) -> None:
    writer = LedgerWriter(ledger, policy, PSEUDONYMS)
    writer.write([(line(e), Position.line("erase", i)) for i, e in enumerate(events, 100)])


def ledger_to_erase(url: str, policy: Policy) -> Ledger:
    """The breach desk's ledger (pupils 1 and 2 in an open incident, still on roll) and
    the pupils above."""
    ledger = ledger_with_breaches(url, policy)
    write(ledger, _events(), policy)
    return ledger


def needs(policy: Policy) -> Needs:
    return Needs(lambda _: policy, school_day(datetime.now(UTC)), PSEUDONYMS, open_incidents_of)


def refused(ledger: Ledger, policy: Policy, pupil_upn: str) -> list[str]:
    with pytest.raises(ErasureRefused) as caught:
        erase(
            ledger,
            finder(ledger)(pupil_upn),
            by="Dana",
            reason="the family asked",
            rule="request",
            needs=needs(policy),
        )
    return caught.value.reasons


def identities(ledger: Ledger) -> set[str]:
    with ledger.engine.connect() as connection:
        return set(connection.execute(select(IDENTITY.c.upn)).scalars())


def head(ledger: Ledger) -> int:
    with ledger.engine.connect() as connection:
        return Ledger.head(connection)[0]


def url_of(ledger: Ledger) -> str:
    return ledger.engine.url.render_as_string(hide_password=False)


def client_of(ledger: Ledger, role: Role, schools: tuple[str, ...] = ()) -> TestClient:
    token = add_user(ledger, f"{role.value}-{len(schools)}", role, schools=schools)
    return TestClient(breach_desk(ledger), headers={"Authorization": f"Bearer {token}"})


def desk_of(ledger: Ledger, role: Role, name: str = "Dana") -> TestClient:
    token = add_user(ledger, name, role)
    client = TestClient(breach_desk(ledger))
    assert client.post("/desk/signin", data={"token": token}, follow_redirects=False).is_redirect
    return client


@pytest.fixture
def ledger(sqlite_url: str, policy: Policy) -> Ledger:
    return ledger_to_erase(sqlite_url, policy)


# -- refusals --------------------------------------------------------------------------------


def test_a_pupil_still_on_roll_is_refused_saying_so(ledger: Ledger, policy: Policy) -> None:
    assert refused(ledger, policy, ON_ROLL) == [
        "school 116234 keeps the pupil's personal details record: the pupil is still on roll "
        "(kept 1 year from leaving)"
    ]
    assert ON_ROLL in identities(ledger)


def test_a_period_counted_from_birth_is_refused_naming_its_last_day(
    db_url: str, policy: Policy
) -> None:
    ledger = ledger_to_erase(db_url, policy)
    assert refused(ledger, policy, SEN_KNOWN) == [
        "school 116234 keeps the pupil's special educational needs (SEN) record: kept until "
        "1 Sep 2041 (31 years from birth)"
    ]


def test_a_period_from_an_unknown_date_of_birth_is_refused_as_unable_to_end(
    ledger: Ledger, policy: Policy
) -> None:
    assert refused(ledger, policy, SEN_UNKNOWN) == [
        "school 116234 keeps the pupil's special educational needs (SEN) record: the pupil's "
        "date of birth is not known (kept 31 years from birth)"
    ]


def test_an_open_incident_concerning_the_pupil_is_named_among_every_reason(
    db_url: str, policy: Policy
) -> None:
    ledger = ledger_to_erase(db_url, policy)
    with ledger.engine.connect() as connection:
        (number,) = [
            i for i, found in incidents(connection).items() if found.cause.rule == "consent.missing"
        ]
    before = head(ledger)
    reasons = refused(ledger, policy, upn(1))
    assert f"incident {number} concerns the pupil and is not closed: close it first" in reasons
    assert any("still on roll" in reason for reason in reasons)
    assert head(ledger) == before and upn(1) in identities(ledger)


def test_a_closed_incident_is_no_longer_a_reason(ledger: Ledger, policy: Policy) -> None:
    with ledger.engine.connect() as connection:
        (number,) = open_incidents_of(connection, finder(ledger)(upn(1)))
    now = datetime.now(UTC)
    for action in (
        Action(ActionKind.ACKNOWLEDGE, "Dana", now),
        Action(ActionKind.ASSESS, "Dana", now, risk=Risk.NO_RISK, reasons="none at risk"),
        Action(ActionKind.CLOSE, "Dana", now, reasons="done"),
    ):
        take_action(ledger, number, action)
    assert not [r for r in refused(ledger, policy, upn(1)) if "incident" in r]


def test_an_incident_of_the_same_event_that_does_not_concern_the_pupil_is_no_reason(
    ledger: Ledger,
) -> None:
    """Pupil 3's incident is another event's: it names pupil 3 alone."""
    with ledger.engine.connect() as connection:
        mine = open_incidents_of(connection, finder(ledger)(upn(1)))
        theirs = open_incidents_of(connection, finder(ledger)(upn(3)))
    assert len(mine) == 1 and len(theirs) == 1 and mine != theirs


def recorded_before_0011(ledger: Ledger, policy: Policy, monkeypatch: pytest.MonkeyPatch) -> str:
    """A pupil, left in 2018, recorded as before migration 0011: their pseudonym the key's
    HMAC of their UPN (which is returned)."""
    old = upn(30)
    with monkeypatch.context() as patched:
        patched.setattr(
            "pipeline.ledger.writing.ingest.resolved",
            lambda _, upns: {u: Identity(PSEUDONYMS(u), stored=False) for u in dict.fromkeys(upns)},
        )
        write(
            ledger,
            [
                census(pupils=[{"upn": old}], time="2018-01-18T10:00:00+00:00"),
                left(old, left_on="2018-07-20", time="2018-07-20T15:00:00+01:00"),
            ],
            policy,
        )
    return old


def test_a_pupil_whose_pseudonym_the_key_remakes_is_refused_until_the_key_is_rotated(
    sqlite_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pupil recorded before migration 0011: their pseudonym is the key's HMAC of the
    UPN, so erasing their row would leave the key and the UPN leading to them."""
    ledger = ledger_to_erase(sqlite_url, policy)
    old = recorded_before_0011(ledger, policy, monkeypatch)
    assert finder(ledger)(old) == PSEUDONYMS(old)
    assert refused(ledger, policy, old) == [
        "the deployment's pseudonym key still makes this pupil's pseudonym from their UPN "
        "(they were recorded before migration 0011): run `sharing-audit ledger rotate-key` first"
    ]


def test_once_the_key_is_rotated_the_old_pupil_is_erased_and_no_key_held_finds_them(
    sqlite_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal above lifts with ``ledger rotate-key``: the new key remakes no old
    pseudonym, and once erased, neither key held nor the UPN leads to the pupil."""
    from pipeline.ledger.privacy.rotation import rotate_key

    ledger = ledger_to_erase(sqlite_url, policy)
    old = recorded_before_0011(ledger, policy, monkeypatch)
    pupil = finder(ledger)(old)
    new_key = bytes(range(32, 64))
    rotate_key(ledger, PSEUDONYMS, new_key, by="Ops", keep=lambda _: None)
    rotated = pseudonymiser(new_key)
    at_rotation = Needs(lambda _: policy, school_day(datetime.now(UTC)), rotated, open_incidents_of)
    erase(ledger, pupil, by="Dana", reason="asked", rule="request", needs=at_rotation)
    assert finder(ledger)(old) == NOBODY
    assert rotated(old) != pupil


def test_a_pupil_nothing_needs_is_erased_and_an_erasure_names_them_by_pseudonym(
    db_url: str, policy: Policy
) -> None:
    ledger = ledger_to_erase(db_url, policy)
    pupil = finder(ledger)(GONE)
    done = erase(ledger, pupil, by="Dana", reason="asked", rule="request", needs=needs(policy))
    assert finder(ledger)(GONE) == NOBODY
    assert GONE not in identities(ledger)
    with ledger.engine.connect() as connection:
        row = connection.exec_driver_sql(f"SELECT kind FROM ledger_entry WHERE seq = {done.seq}")
        assert row.scalar_one() == EntryKind.ERASURE


# -- the API ---------------------------------------------------------------------------------


def test_erased_through_the_api_then_search_and_subject_access_by_upn_find_nothing(
    db_url: str, policy: Policy
) -> None:
    ledger = ledger_to_erase(db_url, policy)
    dpo = client_of(ledger, Role.DPO)
    answer = dpo.post("/pupils/erase", json={"upn": GONE, "reason": "the family asked"})
    assert answer.status_code == 200, answer.text
    said = answer.json()
    assert said["statement"] == (
        f"The data of the pupil was erased from the audit ledger of school {SCHOOL} on "
        f"{_today()} under the right to erasure (a request under UK GDPR Article 17), by "
        f"dpo-0; reference: erasure entry {said['erasure']}."
    )
    found = dpo.post("/entries/search", json={"upn": GONE}).json()
    assert found["entries"] == []
    report = dpo.post("/pupils/sar", json={"upn": GONE, "format": "html"})
    assert report.status_code == 200
    assert "not in the ledger" in report.text and "holds nothing about a pupil" in report.text
    assert "erase" not in report.text.split('id="rights"')[0].lower()
    assert GONE not in json.dumps(said) and GONE_BORN not in json.dumps(said)


def _today() -> str:
    from pipeline.schooltime import shown_day

    return shown_day(school_day(datetime.now(UTC)))


def test_a_refused_erasure_answers_409_with_every_reason(ledger: Ledger) -> None:
    answer = client_of(ledger, Role.DPO).post(
        "/pupils/erase", json={"upn": upn(1), "reason": "asked"}
    )
    assert answer.status_code == 409
    reasons = answer.json()["reasons"]
    assert len(reasons) >= 2 and any("incident" in r for r in reasons)
    assert upn(1) not in answer.text


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.ADMIN])
def test_an_auditor_or_admin_may_not_erase(ledger: Ledger, role: Role) -> None:
    client = client_of(ledger, role)
    before = head(ledger)
    answer = client.post("/pupils/erase", json={"upn": GONE, "reason": "x"})
    assert answer.status_code == 403
    assert head(ledger) == before and GONE in identities(ledger)


def test_a_dpo_of_another_school_finds_no_such_pupil_and_the_attempt_is_logged(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.logging import configure as configure_logging

    other = client_of(ledger, Role.DPO, ("100001",))
    configure_logging(level="INFO", json=True)
    try:
        theirs = other.post("/pupils/erase", json={"upn": GONE, "reason": "asked"})
        nobody = other.post("/pupils/erase", json={"upn": upn(99), "reason": "asked"})
        err = capsys.readouterr().err
    finally:
        configure_logging(level="WARNING")
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json() == nobody.json()
    assert GONE in identities(ledger)
    warned = [json.loads(x) for x in err.splitlines() if '"other_school_asked"' in x]
    assert [w["route"] for w in warned] == ["/pupils/erase"]
    assert GONE not in err


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"upn": "not-a-upn", "reason": "asked"}, "not a valid UPN"),
        ({"upn": GONE, "reason": f"asked for {GONE}"}, "shaped like a UPN"),
        ({"upn": GONE, "reason": "born 11/04/2005"}, "holds a date"),
        ({"upn": GONE, "reason": "  "}, "say why"),
    ],
)
def test_a_bad_upn_or_a_reason_that_could_identify_the_pupil_is_422(
    ledger: Ledger, body: dict[str, str], said: str
) -> None:
    answer = client_of(ledger, Role.DPO).post("/pupils/erase", json=body)
    assert answer.status_code == 422 and said in answer.text
    assert GONE in identities(ledger)


# -- the desk --------------------------------------------------------------------------------


def test_the_desk_asks_then_says_what_cannot_be_undone_then_erases_and_gives_the_statement(
    db_url: str, policy: Policy
) -> None:
    ledger = ledger_to_erase(db_url, policy)
    desk = desk_of(ledger, Role.DPO)
    form = desk.get("/desk/pupils/erase")
    assert form.status_code == 200 and "kept for ever" in form.text
    asked = {"upn": GONE, "reason": "the family asked"}
    confirm = desk.post("/desk/pupils/erase", data=asked)
    assert confirm.status_code == 200
    for said in ("UPN and date of birth are deleted", "leads to no one", "your name"):
        assert said in confirm.text
    assert GONE in identities(ledger)  # nothing erased until confirmed
    done = desk.post("/desk/pupils/erase", data={**asked, "confirmed": "yes"})
    assert done.status_code == 200
    assert "The data of the pupil was erased from the audit ledger of school 116234" in done.text
    assert "/desk/print.js" in done.text and "data-print" in done.text
    assert GONE not in identities(ledger)


def test_the_desk_lists_every_reason_an_erasure_is_refused(ledger: Ledger) -> None:
    desk = desk_of(ledger, Role.DPO)
    page = desk.post("/desk/pupils/erase", data={"upn": upn(1), "reason": "asked", **YES})
    assert page.status_code == 409
    assert page.text.count("<li>") >= 2 and "is not closed" in page.text
    assert upn(1) in identities(ledger)


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.ADMIN])
def test_the_desk_refuses_an_auditor_or_admin_every_step(ledger: Ledger, role: Role) -> None:
    desk = desk_of(ledger, role)
    asked = {"upn": GONE, "reason": "asked"}
    assert desk.get("/desk/pupils/erase").status_code == 403
    assert desk.post("/desk/pupils/erase", data=asked).status_code == 403
    assert desk.post("/desk/pupils/erase", data={**asked, **YES}).status_code == 403
    assert GONE in identities(ledger)


def test_a_desk_erasure_posted_from_another_site_is_refused(ledger: Ledger) -> None:
    desk = desk_of(ledger, Role.DPO)
    answer = desk.post(
        "/desk/pupils/erase",
        data={"upn": GONE, "reason": "asked", **YES},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert answer.status_code == 403 and GONE in identities(ledger)


def test_the_desk_prints_an_erasure_statement_again_by_its_reference(ledger: Ledger) -> None:
    desk = desk_of(ledger, Role.DPO)
    desk.post("/desk/pupils/erase", data={"upn": GONE, "reason": "asked", **YES})
    seq = head(ledger)
    again = desk.post("/desk/sar", data={"erasure": str(seq)})
    assert again.status_code == 200
    assert f"reference: erasure entry {seq}." in again.text
    assert desk.post("/desk/sar", data={"erasure": "1"}).status_code == 404


# -- the command line ------------------------------------------------------------------------


def test_pupils_erase_prints_the_statement_and_the_ledger_still_verifies(
    db_url: str, policy: Policy
) -> None:
    ledger = ledger_to_erase(db_url, policy)
    args = ["pupils", "erase", "--upn", GONE, "--reason", "the family asked", "--by", "Dana"]
    done = runner.invoke(app, [*args, "--db", url_of(ledger), "--yes"], env=ENV)
    assert done.exit_code == 0, done.output
    seq = head(ledger)
    assert done.stdout.strip() == (
        f"The data of the pupil was erased from the audit ledger of school {SCHOOL} on "
        f"{_today()} under the right to erasure (a request under UK GDPR Article 17), by "
        f"Dana; reference: erasure entry {seq}."
    )
    verified = runner.invoke(app, ["ledger", "verify", "--db", url_of(ledger)], env=ENV)
    assert verified.exit_code == 0, verified.output
    again = runner.invoke(
        app, ["report", "sar", "--erasure", str(seq), "--db", url_of(ledger)], env=ENV
    )
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == done.stdout.strip()


def test_pupils_erase_without_a_terminal_asks_for_yes_and_erases_nothing(ledger: Ledger) -> None:
    args = ["pupils", "erase", "--upn", GONE, "--reason", "asked", "--db", url_of(ledger)]
    done = runner.invoke(app, args, env=ENV)
    assert done.exit_code == 2 and "--yes" in done.stderr
    assert GONE in identities(ledger)


def test_pupils_erase_refused_names_every_reason_and_exits_1(ledger: Ledger) -> None:
    args = ["pupils", "erase", "--upn", upn(1), "--reason", "asked", "--db", url_of(ledger)]
    done = runner.invoke(app, [*args, "--yes"], env=ENV)
    assert done.exit_code == 1
    assert "cannot be erased yet" in done.stderr and "is not closed" in done.stderr
    assert "still on roll" in done.stderr and "Traceback" not in done.output


@pytest.mark.parametrize(
    ("pupil", "said"),
    [("not-a-upn", "--upn: not a valid UPN"), (upn(99), "no entry names a pupil of this UPN")],
)
def test_pupils_erase_of_a_bad_or_unknown_upn_is_a_clear_error(
    ledger: Ledger, pupil: str, said: str
) -> None:
    args = ["pupils", "erase", "--upn", pupil, "--reason", "asked", "--db", url_of(ledger)]
    done = runner.invoke(app, [*args, "--yes"], env=ENV)
    assert done.exit_code == 2 and said in done.stderr and "Traceback" not in done.output


def test_pupils_erase_of_a_pupil_erased_already_finds_nobody(ledger: Ledger) -> None:
    args = ["pupils", "erase", "--upn", GONE, "--reason", "asked", "--db", url_of(ledger), "--yes"]
    assert runner.invoke(app, args, env=ENV).exit_code == 0
    again = runner.invoke(app, args, env=ENV)
    assert again.exit_code == 2 and "no entry names a pupil of this UPN" in again.stderr


def test_report_sar_by_an_erased_upn_says_nothing_is_held_and_never_erased(
    ledger: Ledger,
) -> None:
    args = ["pupils", "erase", "--upn", GONE, "--reason", "asked", "--db", url_of(ledger), "--yes"]
    assert runner.invoke(app, args, env=ENV).exit_code == 0
    report = runner.invoke(
        app, ["report", "sar", "--pupil", GONE, "--db", url_of(ledger), "-f", "json"], env=ENV
    )
    assert report.exit_code == 0, report.output
    found = orjson.loads(report.stdout)
    assert found["entries"] == [] and found["pupil"]["upn"] is None
    html = runner.invoke(app, ["report", "sar", "--pupil", GONE, "--db", url_of(ledger)], env=ENV)
    assert "not in the ledger" in html.stdout
    assert "erased" not in html.stdout


def test_report_sar_erasure_of_an_entry_that_is_no_erasure_is_a_clear_error(
    ledger: Ledger,
) -> None:
    done = runner.invoke(app, ["report", "sar", "--erasure", "1", "--db", url_of(ledger)], env=ENV)
    assert done.exit_code == 2 and "entry 1 is no erasure" in done.stderr


def test_erasure_entries_are_named_in_plain_words_on_the_search_page(ledger: Ledger) -> None:
    desk = desk_of(ledger, Role.DPO)
    desk.post("/desk/pupils/erase", data={"upn": GONE, "reason": "asked", **YES})
    page = desk.get("/desk/search?kind=erasure&go=1")
    assert page.status_code == 200
    assert "erasure of a pupil" in page.text
    assert "pupil erased by Dana at the family&#39;s request (Art 17)" in page.text


def test_a_report_by_the_erased_pupils_pseudonym_says_when_and_why_they_were_erased(
    ledger: Ledger,
) -> None:
    """An auditor's search still finds the pseudonym in the entries: its report says the
    identifiers were erased, and lists the erasure as no record about the pupil."""
    pupil = finder(ledger)(GONE)
    dpo = client_of(ledger, Role.DPO)
    seq = dpo.post("/pupils/erase", json={"upn": GONE, "reason": "asked"}).json()["erasure"]
    report = dpo.post("/pupils/sar", json={"pupil": pupil, "format": "json"}).json()
    assert report["erased"]["seq"] == seq and report["erased"]["rule"] == "request"
    assert seq not in [f["seq"] for f in report["lifecycle"]]
    page = dpo.post("/pupils/sar", json={"pupil": pupil, "format": "html"}).text
    assert f"at the family&#39;s request (Art 17) (erasure entry {seq})" in page
    assert "identifiers erased" in page
