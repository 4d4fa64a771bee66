"""The policy pack format, its loader's errors, its version, and the shipped pack's values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.packs import load_pack, pack_text, shipped_packs
from pipeline.policy.pack import ANY_SCHOOL, PackError, Policy, canonical_pack, parse_pack

ALL_ELEVEN = {
    "personal",
    "characteristics",
    "nationality",
    "ethnicity",
    "attendance",
    "exclusions",
    "assessment",
    "travel",
    "medical",
    "sen",
    "behaviour",
}
CENSUS_CATEGORIES = ALL_ELEVEN - {"nationality", "medical", "behaviour"}

# (recipient, event type): (categories, lawful bases, Art 9 conditions, channels), exactly as
# shared/reference/england-schools-policy.md sets them.
EXPECTED_ROWS = {
    ("dfe", "census"): (CENSUS_CATEGORIES, {"legal_obligation"}, {"9.2.g"}, {"collect"}),
    ("la:850", "census"): (CENSUS_CATEGORIES, {"legal_obligation"}, {"9.2.g"}, {"collect"}),
    ("la:850", "referral"): (
        {"personal", "characteristics", "attendance", "exclusions", "behaviour", "sen", "medical"},
        {"legal_obligation", "public_task", "vital_interests"},
        {"9.2.g", "9.2.h", "9.2.c"},
        {"secure_email", "portal"},
    ),
    (ANY_SCHOOL, "transfer"): (
        ALL_ELEVEN,
        {"legal_obligation"},
        {"9.2.g"},
        {"s2s", "secure_email"},
    ),
    ("agency:school-nursing", "referral"): (
        {"personal", "characteristics", "attendance", "medical", "sen"},
        {"public_task", "consent", "vital_interests"},
        {"9.2.h", "9.2.a", "9.2.c"},
        {"secure_email", "portal", "in_person"},
    ),
    ("agency:family-support", "referral"): (
        {"personal", "characteristics", "attendance", "exclusions", "behaviour", "medical", "sen"},
        {"consent", "vital_interests"},
        {"9.2.a", "9.2.c"},
        {"secure_email", "portal", "in_person"},
    ),
    ("agency:speech-language-therapy", "referral"): (
        {"personal", "assessment", "medical", "sen"},
        {"consent"},
        {"9.2.a", "9.2.h"},
        {"secure_email", "portal", "in_person"},
    ),
    ("agency:hearing-impairment", "referral"): (
        {"personal", "assessment", "medical", "sen"},
        {"consent"},
        {"9.2.a", "9.2.h"},
        {"secure_email", "portal", "in_person"},
    ),
    ("agency:educational-psychology", "referral"): (
        {"personal", "characteristics", "attendance", "assessment", "behaviour", "medical", "sen"},
        {"consent", "public_task"},
        {"9.2.a", "9.2.h"},
        {"secure_email", "portal", "in_person"},
    ),
}


class TestShippedPack:
    def test_it_defines_the_eleven_categories_and_the_special_ones(self, policy: Policy) -> None:
        assert policy.categories == ALL_ELEVEN
        assert policy.special == {"ethnicity", "medical", "sen"}

    def test_its_permitted_rows_are_exactly_the_reference_table(self, policy: Policy) -> None:
        actual = {
            key: (
                set(p.categories),
                set(p.lawful_bases),
                set(p.special_conditions),
                set(p.channels),
            )
            for key, p in policy.permissions.items()
        }
        assert actual == EXPECTED_ROWS

    def test_its_retention_periods_are_the_reference_ones(self, policy: Policy) -> None:
        attendance, sen = policy.retention_for("attendance"), policy.retention_for("sen")
        assert (attendance.years, attendance.counted_from) == (6, "record")
        assert (sen.years, sen.counted_from) == (31, "dob")
        for other in ALL_ELEVEN - {"attendance", "sen"}:
            r = policy.retention_for(other)
            assert (r.years, r.months, r.days, r.counted_from) == (1, 0, 0, "left")

    def test_its_deadlines_channels_and_severity_are_the_reference_ones(
        self, policy: Policy
    ) -> None:
        assert policy.transfer_deadline == 15
        assert policy.closure_dates == ()
        assert policy.plain_channels == {"email", "post"}
        assert policy.high_pupil_count == 10
        every_channel = set().union(*(p.channels for p in policy.permissions.values()))
        assert not every_channel & {"email", "post"}

    def test_every_row_names_its_legal_gateway(self, policy: Policy) -> None:
        gateways = {key: p.gateway for key, p in policy.permissions.items()}
        assert "s537A" in gateways[("dfe", "census")]
        assert "Pupil Information" in gateways[(ANY_SCHOOL, "transfer")]
        assert "Children Act 1989" in gateways[("agency:school-nursing", "referral")]

    def test_every_row_says_why_in_words_a_parent_reads(self, policy: Policy) -> None:
        """A subject-access report gives each recipient's purpose from the pack."""
        missing = [key for key, p in policy.permissions.items() if not p.purpose]
        assert missing == []

    def test_its_rows_match_the_reference_document(self, policy: Policy, shared_dir: Path) -> None:
        text = (shared_dir / "reference" / "england-schools-policy.md").read_text()
        section = text.split("## Permitted recipients", 1)[1].split("\n\n", 2)[1]
        rows: dict[tuple[str, str], tuple[set[str], ...]] = {}
        for row in section.splitlines()[2:]:
            cells = [c.strip().strip("`") for c in row.strip("|").split("|")]
            rid, _, kind, cats, bases, conditions, channels = cells
            rid = ANY_SCHOOL if rid.startswith("school:") else rid

            def names(cell: str) -> set[str]:
                return {c.strip().strip("`") for c in cell.split(",")}

            if cats == "as `dfe":
                categories = rows[("dfe", "census")][0]
            elif cats.startswith("all eleven"):
                categories = ALL_ELEVEN
            else:
                categories = names(cats)
            rows[(rid, kind)] = (categories, names(bases), names(conditions), names(channels))
        assert rows == EXPECTED_ROWS


class TestVersion:
    def test_it_is_the_sha256_of_the_canonical_pack(self, policy: Policy) -> None:
        assert re.fullmatch(r"[0-9a-f]{64}", policy.version)

    def test_comments_and_key_order_do_not_change_it(self, policy: Policy) -> None:
        text, _ = pack_text()
        restyled = "# a comment\n" + text.replace("  personal: {", "  # note\n  personal: {")
        assert parse_pack(restyled, "copy").version == policy.version

    def test_any_change_of_value_changes_it(self, policy: Policy) -> None:
        text, _ = pack_text()
        changed = parse_pack(
            text.replace("deadline_school_days: 15", "deadline_school_days: 20"), "x"
        )
        assert changed.version != policy.version

    def test_a_pack_giving_no_purposes_keeps_the_version_it_had_before_packs_could(
        self,
    ) -> None:
        """A school's own pack written before purposes existed is not made a new version by
        them: its entries stay decided by "the policy in force now"."""
        text, _ = pack_text()
        without = re.sub(r"\n        purpose: >-\n(?:          .*\n)+", "\n", text)
        spec = parse_pack(without, "older").spec
        assert all(
            p.purpose is None for r in spec.recipients.values() for p in r.permissions.values()
        )
        assert b'"purpose"' not in canonical_pack(spec)
        assert b'"purpose"' in canonical_pack(parse_pack(text, "x").spec)


class TestLoaderErrors:
    def problems(self, text: str) -> list[str]:
        with pytest.raises(PackError) as info:
            parse_pack(text, "school.yaml")
        return info.value.problems

    def test_a_yaml_syntax_error_names_the_line(self) -> None:
        assert self.problems("pack: x\ncategories: [unclosed\n")[0].startswith("line 3, column 1:")

    def test_a_mistyped_value_names_its_path(self) -> None:
        text, _ = pack_text()
        broken = text.replace("channels: [collect]", "channels: [fax]", 1)
        (problem,) = self.problems(broken)
        assert problem.startswith("recipients.dfe.permissions.census.channels[0]:")

    def test_an_undefined_category_in_a_row_names_its_path(self) -> None:
        text, _ = pack_text()
        broken = text.replace(
            "categories: [personal, assessment, medical, sen]",
            "categories: [personal, assesment, medical, sen]",
            1,
        )
        assert self.problems(broken) == [
            "recipients.agency:speech-language-therapy.permissions.referral.categories[1]: "
            "'assesment' is not a category defined under categories"
        ]

    def test_an_unknown_key_is_an_error_not_ignored(self) -> None:
        text, _ = pack_text()
        broken = text.replace("deadline_school_days: 15", "deadline_school_day: 15")
        assert "transfers.deadline_school_day: Extra inputs are not permitted" in self.problems(
            broken
        )

    def test_a_duplicate_key_is_an_error(self) -> None:
        text, _ = pack_text()
        broken = text.replace("closure_dates: []", "closure_dates: []\nclosure_dates: [2026-01-01]")
        assert "duplicate key 'closure_dates'" in self.problems(broken)[0]

    def test_a_malformed_recipient_id_is_an_error(self) -> None:
        text, _ = pack_text()
        broken = text.replace("  agency:family-support:", "  Family Support:")
        assert self.problems(broken)[0].startswith("recipients.Family Support: not a recipient id")

    def test_a_document_that_is_not_a_mapping_is_an_error(self) -> None:
        assert self.problems("- just\n- a list\n") == [
            "(top level): a policy pack is a YAML mapping"
        ]

    def test_a_missing_file_names_the_shipped_packs(self, tmp_path: Path) -> None:
        with pytest.raises(PackError) as info:
            load_pack(str(tmp_path / "nope.yaml"))
        assert "england-schools" in info.value.problems[0]


def test_the_default_pack_ships_as_package_data() -> None:
    assert "england-schools" in shipped_packs()
    assert load_pack("england-schools").name == "england-schools"


class TestLedgerRetention:
    """How long the ledger keeps a pupil identifiable after their records' last period."""

    def with_ledger_retention(self, rule: str) -> str:
        text, _ = pack_text()
        return text.replace("\ntransfers:", f"\nledger_retention: {rule}\ntransfers:", 1)

    def test_a_pack_giving_none_keeps_six_years_under_the_limitation_act(
        self, policy: Policy
    ) -> None:
        kept = policy.ledger_retention
        assert (kept.years, kept.months, kept.days) == (6, 0, 0)
        assert policy.spec.ledger_retention is None
        assert "Limitation Act 1980" in policy.spec.ledger_kept.source

    def test_a_pack_giving_none_keeps_the_version_it_had_before_packs_could(
        self, policy: Policy
    ) -> None:
        assert b'"ledger_retention"' not in canonical_pack(policy.spec)

    def test_a_pack_giving_one_is_kept_to_it_and_is_a_new_version(self, policy: Policy) -> None:
        given = parse_pack(self.with_ledger_retention("{years: 7, source: trust}"), "x")
        kept = given.ledger_retention
        assert (kept.years, kept.months, kept.days, given.spec.ledger_kept.source) == (
            7,
            0,
            0,
            "trust",
        )
        assert given.version != policy.version

    def test_a_period_of_nothing_is_refused_naming_where(self) -> None:
        with pytest.raises(PackError) as info:
            parse_pack(self.with_ledger_retention("{source: none}"), "school.yaml")
        assert info.value.problems == [
            "ledger_retention: a retention period needs years, months or days"
        ]

    def test_a_negative_period_is_refused_naming_where(self) -> None:
        with pytest.raises(PackError) as info:
            parse_pack(self.with_ledger_retention("{years: -6}"), "school.yaml")
        assert info.value.problems[0].startswith("ledger_retention.years:")

    def test_a_mistyped_key_is_refused_not_ignored(self) -> None:
        with pytest.raises(PackError) as info:
            parse_pack(self.with_ledger_retention("{yeras: 6}"), "school.yaml")
        assert info.value.problems[0].startswith("ledger_retention.yeras:")
