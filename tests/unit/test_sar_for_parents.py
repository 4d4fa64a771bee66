"""A subject-access report a school can post to a parent (pipeline.reports.sar and its
page): it names the school that holds the data and its Data Protection Officer, says why
each recipient was sent data and how long each kind is kept, states the parent's rights
and how to complain to the ICO, and leaves the proof to an appendix after all of that."""

from __future__ import annotations

from typing import Any

from pipeline.policy.pack import Policy
from pipeline.policy.schools import Controller, Schools
from pipeline.reports.formats import sar_html
from pipeline.reports.sar import Identity, build_sar
from tests.unit.test_reports import entry

WESTFIELDS = Controller(
    "116234",
    "Westfields Junior School",
    "Westfields Road\nEastleigh SO50 1AA",
    "Mrs A Patel, dpo@westfields.example",
)


def referral(seq: int, **fields: Any) -> Any:
    """A referral of pupil ``a`` alone from Westfields, to the school nurses."""
    base: dict[str, Any] = {
        "event_type": "uk.school.pupil.referred.v1",
        "recipient": "agency:school-nursing",
        "pupil_keys": ["a"],
        "categories": ["personal", "medical"],
        "lawful_basis": "consent",
        "school": "116234",
    }
    return entry(seq, **{**base, **fields})


def register_of(policy: Policy, *schools: Controller) -> Schools:
    return Schools(
        {s.urn or "": s.name or "" for s in schools},
        {s.urn or "": policy for s in schools},
        controllers={s.urn or "": s for s in schools},
    )


def report_of(policy: Policy, *entries: Any, **kw: Any) -> dict[str, Any]:
    return build_sar("a", Identity("A123", "2016-05-01"), entries, {}, policy, **kw)


def printed(report: dict[str, Any]) -> str:
    """The page as the DPO prints it, with what the ledger adds when it is served."""
    checkpoint = {
        "checkpoint": "sharing-audit.localhost/log\n3\nROOT=\n",
        "size": 3,
        "proofs": [],
        "after_the_checkpoint": [],
        "how_to_check": "sharing-audit audit verify",
    }
    served = {**report, "as_of": 3, "generated_at": "2026-12-01T10:00:00.000000Z"}
    return sar_html({**served, "verifiable_log": checkpoint})


def test_the_report_names_the_school_of_the_register_that_holds_the_data(
    policy: Policy,
) -> None:
    report = report_of(policy, referral(1), schools=register_of(policy, WESTFIELDS))
    assert report["controllers"] == [
        {
            "urn": "116234",
            "name": "Westfields Junior School",
            "address": "Westfields Road\nEastleigh SO50 1AA",
            "dpo_contact": "Mrs A Patel, dpo@westfields.example",
            "missing": [],
        }
    ]


def test_without_a_register_the_school_is_named_as_the_settings_give_it(
    policy: Policy,
) -> None:
    configured = Controller(None, WESTFIELDS.name, WESTFIELDS.address, WESTFIELDS.dpo_contact)
    (named,) = report_of(policy, referral(1), school=configured)["controllers"]
    assert named["urn"] == "116234"  # from the entries: the settings need not repeat it
    assert (named["name"], named["dpo_contact"]) == (WESTFIELDS.name, WESTFIELDS.dpo_contact)


def test_a_school_named_nowhere_is_reported_with_what_a_parent_would_miss(
    policy: Policy,
) -> None:
    (named,) = report_of(policy, referral(1))["controllers"]
    assert named["urn"] == "116234"
    assert named["missing"] == [
        "the school's name",
        "its address",
        "its Data Protection Officer's contact",
    ]
    assert "Before sending this report" in printed(report_of(policy, referral(1)))


def test_each_recipient_is_given_with_why_the_schools_pack_says_it_is_sent_data(
    policy: Policy,
) -> None:
    later = referral(2, occurred_at="2026-03-02T10:00:00Z", categories=["personal", "sen"])
    (row,) = report_of(policy, referral(1), later)["purposes"]
    said = policy.permission_for("agency:school-nursing", "referral")
    assert said is not None and said.purpose
    assert (row["recipient_name"], row["purpose"]) == ("School Nursing Service", said.purpose)
    assert row["gateway"] == said.gateway
    assert (row["times"], row["categories"]) == (2, ["medical", "personal", "sen"])
    assert (row["first"], row["last"]) == ("2026-01-15T10:00:00Z", "2026-03-02T10:00:00Z")


def test_a_sharing_the_pack_gives_no_purpose_for_is_explained_by_the_event_itself(
    policy: Policy,
) -> None:
    unknown = referral(1, recipient="agency:tutoring")
    report = build_sar(
        "a", Identity("A123", None), [unknown], {1: {"purpose": "catch-up tuition"}}, policy
    )
    (row,) = report["purposes"]
    assert (row["recipient_name"], row["purpose"]) == (None, "catch-up tuition")


def test_how_long_each_kind_of_data_is_kept_comes_from_the_schools_pack(
    policy: Policy,
) -> None:
    (group,) = report_of(policy, referral(1))["retention"]
    periods = {p["category"]: p for p in group["periods"]}
    assert set(periods) == {*policy.retention, None}  # None: everything else
    attendance = periods["attendance"]
    assert attendance["kept_for"] == policy.retention_for("attendance").describe()
    assert attendance["counted_from"] == "from the date of each record"
    assert periods[None]["kept_for"] == policy.default_retention.describe()
    assert periods[None]["counted_from"] == "from the day the pupil leaves the school"


def test_the_page_names_the_controller_the_rights_and_the_ico(policy: Policy) -> None:
    page = printed(report_of(policy, referral(1), schools=register_of(policy, WESTFIELDS)))
    assert "Westfields Junior School" in page and "(URN 116234)" in page
    assert "Westfields Road\nEastleigh SO50 1AA" in page
    assert "Mrs A Patel, dpo@westfields.example" in page
    for right in ("Access", "Rectification", "Erasure", "Restriction", "Objection"):
        assert f"<strong>{right}</strong>" in page
    assert "ico.org.uk/make-a-complaint" in page and "0303 123 1113" in page
    assert "Before sending this report" not in page


def test_the_proof_is_an_appendix_after_everything_a_parent_reads(policy: Policy) -> None:
    page = printed(report_of(policy, referral(1)))
    appendix = page.index("For an auditor or anyone checking this report")
    for parents in ('id="why"', 'id="disclosures"', 'id="retention"', 'id="complain"'):
        assert page.index(parents) < appendix, parents
    for proof in ('id="sar-checkpoint"', "Ledger entries", "version"):
        assert page.index(proof) > appendix, proof
