"""The privacy notice made from the pack: read back out of its HTML (parsed, section by
section), it names every recipient, category, lawful basis, Art 9 condition and retention
period the pack holds, in the pack's own words."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from html.parser import HTMLParser
from importlib import resources

import pytest

from pipeline.policy.notice import (
    SECTIONS,
    notice_changes,
    notice_digest,
    notice_markdown,
    notice_of,
)
from pipeline.policy.pack import DEFAULT_NOTICE, PackError, Policy, compile_pack, parse_pack
from pipeline.policy.schools import Controller
from pipeline.reports.formats import notice_html

SCHOOL = Controller(
    "116234", "Westfields Junior School", "Westfields Road\nEastleigh", "dpo@westfields.example"
)
MADE_ON = date(2026, 12, 7)


@dataclass
class Part:
    """A section or sub-section of the page: its heading, its text, its terms and what
    each says (a list's items one by one), its tables' rows, and its sub-sections."""

    heading: str = ""
    text: list[str] = field(default_factory=list)
    terms: list[tuple[str, list[str]]] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    parts: dict[str, Part] = field(default_factory=dict)

    def said(self) -> str:
        return " ".join(self.text)


class NoticeReader(HTMLParser):
    """The notice's sections by id, as a browser would build them."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, Part] = {}
        self.stack: list[Part] = []
        self.tags: list[str] = []
        self.scripts = 0
        self.styles: list[str] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        if tag == "section":
            part = Part()
            ident = dict(attrs).get("id") or ""
            (self.stack[-1].parts if self.stack else self.sections)[ident] = part
            self.stack.append(part)
        if tag in ("h2", "h3", "dt", "dd", "li", "td", "p") and self.stack:
            self._text = []
        if tag == "tr" and self.stack:
            self.stack[-1].rows.append([])
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self.tags and self.tags.pop() != tag:
            pass
        if tag == "section":
            self.stack.pop()
            return
        if not self.stack:
            return
        part, text = self.stack[-1], " ".join("".join(self._text).split())
        if tag in ("h2", "h3"):
            part.heading = text
        elif tag == "dt":
            part.terms.append((text, []))
        elif tag == "dd" and part.terms and not part.terms[-1][1]:
            part.terms[-1][1].append(text)
        elif tag == "li":
            if "dd" in self.tags:
                part.terms[-1][1].append(text)
            else:
                part.items.append(text)
            self._text = []
        elif tag == "td":
            part.rows[-1].append(text)
        elif tag == "p":
            part.text.append(text)

    def handle_data(self, data: str) -> None:
        self._text.append(data)
        if self.tags and self.tags[-1] == "style":
            self.styles.append(data)


def read(html: str) -> NoticeReader:
    reader = NoticeReader()
    reader.feed(html)
    return reader


@pytest.fixture(scope="module")
def page(policy: Policy) -> NoticeReader:
    return read(notice_html(notice_of(policy, SCHOOL), MADE_ON))


def name_of(policy: Policy, rid: str) -> str:
    """A recipient's name as the pack gives it for a notice."""
    name = policy.spec.notice_words.recipients.get(rid) or policy.spec.recipients[rid].name
    return name[0].upper() + name[1:]


def category_of(policy: Policy, category: str) -> str:
    return policy.spec.notice_words.categories.get(category) or category


def test_the_notice_has_every_section_in_order(page: NoticeReader) -> None:
    assert list(page.sections) == list(SECTIONS)


def test_the_notice_names_every_recipient_the_pack_permits(
    page: NoticeReader, policy: Policy
) -> None:
    shared = page.sections["who-we-share-with"].parts
    assert sorted(p.heading for p in shared.values()) == sorted(
        name_of(policy, rid) for rid in policy.spec.recipients
    )


def test_the_notice_names_every_category_with_what_it_covers(
    page: NoticeReader, policy: Policy
) -> None:
    rows = page.sections["what"].rows[1:]
    assert [(r[0], r[1]) for r in rows] == [
        (category_of(policy, name), c.covers) for name, c in policy.spec.categories.items()
    ]
    special = {r[0] for r in rows if r[2] == "Yes"}
    assert special == {category_of(policy, c) for c in policy.special}


def test_each_recipient_has_its_categories_bases_conditions_and_law(
    page: NoticeReader, policy: Policy
) -> None:
    words = policy.spec.notice_words
    shared = {p.heading: p for p in page.sections["who-we-share-with"].parts.values()}
    for rid, recipient in policy.spec.recipients.items():
        part = shared[name_of(policy, rid)]
        blocks = [dict(part.terms[i : i + 6]) for i, (t, _) in enumerate(part.terms) if t == "When"]
        assert len(blocks) == len(recipient.permissions)
        for terms, permission in zip(blocks, recipient.permissions.values(), strict=True):
            assert terms["Why"] == [permission.purpose]
            assert terms["What we share"][0].split("; ") == [
                category_of(policy, c) for c in permission.categories
            ]
            bases = terms["Our lawful basis (one of these)"]
            assert bases == [
                f"{words.lawful_bases[b].words} ({words.lawful_bases[b].law})"
                for b in permission.lawful_bases
            ]
            conditions = terms["For special category information (one of these)"]
            assert conditions == [
                f"{words.special_conditions[c].words} ({words.special_conditions[c].law})"
                for c in permission.special_conditions
            ]
            assert terms["The law that allows it"] == [permission.gateway]


def test_every_lawful_basis_and_condition_in_the_pack_is_named_with_its_law(
    page: NoticeReader, policy: Policy
) -> None:
    said = " ".join(
        v
        for p in page.sections["who-we-share-with"].parts.values()
        for _, vs in p.terms
        for v in vs
    )
    for recipient in policy.spec.recipients.values():
        for permission in recipient.permissions.values():
            for basis in permission.lawful_bases:
                assert policy.spec.notice_words.lawful_bases[basis].law in said
            for condition in permission.special_conditions:
                assert policy.spec.notice_words.special_conditions[condition].law in said


def test_every_category_has_its_retention_period_and_source(
    page: NoticeReader, policy: Policy
) -> None:
    rows = page.sections["how-long"].rows[1:]
    kept = {}
    for row in rows:
        for category in row[0].split("; "):
            kept[category] = (row[1], row[3])
    for name in policy.spec.categories:
        retention = policy.spec.retention.categories.get(name, policy.spec.retention.default)
        assert kept[category_of(policy, name)] == (
            policy.retention_for(name).describe(),
            retention.source,
        )


def test_the_notice_says_which_pack_version_it_was_made_from(
    page: NoticeReader, policy: Policy
) -> None:
    assert policy.version in page.sections["about"].said()
    assert "7 December 2026" in page.sections["about"].said()


def test_the_notice_names_the_controller_and_the_dpo(page: NoticeReader) -> None:
    facts = dict(page.sections["who-we-are"].terms)
    assert facts["School"] == ["Westfields Junior School"]
    assert facts["School number (URN)"] == ["116234"]
    assert facts["Local authority"] == ["LA 850"]
    assert facts["Data Protection Officer"] == ["dpo@westfields.example"]
    assert "dpo@westfields.example" in page.sections["complaints"].said()


def test_the_rights_include_erasure_where_consent_applies_objection_and_the_ico(
    page: NoticeReader, policy: Policy
) -> None:
    rights = " ".join(page.sections["your-rights"].items)
    assert "copy" in rights and "correct" in rights
    assert "delete information we hold because you agreed" in rights
    assert name_of(policy, "agency:speech-language-therapy") in rights
    assert "object" in rights
    assert "0303 123 1113" in page.sections["complaints"].said()


def test_the_notice_is_printable_and_runs_no_script(page: NoticeReader) -> None:
    assert page.scripts == 0
    assert "@media print" in "".join(page.styles)


def test_short_sentences_a_parent_can_read(policy: Policy) -> None:
    """The notice's own sentences (the pack's purposes and laws aside) average under 15
    words, as the DfE's template notices do."""
    says = notice_of(policy, SCHOOL)
    text = notice_markdown(says, MADE_ON)
    own = [
        line for line in text.splitlines() if line and not line.startswith(("#", "-", "|", "  -"))
    ]
    sentences = [s for line in own for s in re.split(r"(?<=[.:])\s+", line) if s]
    words = [len(s.split()) for s in sentences]
    assert sum(words) / len(words) < 15


def test_a_school_without_a_dpo_contact_is_warned_before_publishing(policy: Policy) -> None:
    page = read(notice_html(notice_of(policy, Controller("116234", "Westfields")), MADE_ON))
    assert "Data Protection Officer's contact" in page.sections["who-we-are"].said()


def test_the_markdown_has_the_same_headings_as_the_html(page: NoticeReader, policy: Policy) -> None:
    text = notice_markdown(notice_of(policy, SCHOOL), MADE_ON)
    assert re.findall(r"^## (.+)$", text, re.M) == [s.heading for s in page.sections.values()]
    headings = re.findall(r"^### (.+)$", text, re.M)
    assert headings == [p.heading for p in page.sections["who-we-share-with"].parts.values()]


def _shipped() -> str:
    return resources.files("pipeline.packs").joinpath("england-schools.yaml").read_text("utf-8")


def _without_notice(text: str) -> str:
    return re.sub(r"\nnotice:\n(?:  .*\n|\n)*", "\n", text)


def test_a_pack_written_before_notices_is_valid_and_uses_the_default_words() -> None:
    old = parse_pack(_without_notice(_shipped()), "old.yaml")
    assert old.spec.notice is None
    says = notice_of(old, SCHOOL)
    assert (
        says["lawful_bases"]["legal_obligation"]
        == DEFAULT_NOTICE.lawful_bases[
            "legal_obligation"  # type: ignore[index]
        ].model_dump()
    )
    assert says["categories"]["sen"]["name"] == "sen"


def test_a_pack_without_a_notice_keeps_the_version_it_had_before(policy: Policy) -> None:
    old = parse_pack(_without_notice(_shipped()), "old.yaml")
    again = compile_pack(old.spec.model_copy(update={"notice": None}))
    assert again.version == old.version
    assert old.version != policy.version


def test_a_notice_naming_a_category_the_pack_lacks_is_refused_with_its_place() -> None:
    text = _shipped().replace("    behaviour: behaviour records\n", "    photos: photographs\n", 1)
    with pytest.raises(PackError) as caught:
        parse_pack(text, "mine.yaml")
    assert any(p.startswith("notice.categories.photos:") for p in caught.value.problems)


def test_changes_name_a_category_now_shared_with_a_recipient(policy: Policy) -> None:
    before = notice_of(policy, SCHOOL)
    after = notice_of(policy, SCHOOL)
    after["recipients"]["dfe"]["sharing"][0]["categories"].append("medical")
    assert notice_changes(before, after) == ["Department for Education (dfe) is now sent: medical"]
    assert notice_changes(before, notice_of(policy, SCHOOL)) == []


def test_the_digest_ignores_the_pack_version_alone(policy: Policy) -> None:
    says = notice_of(policy, SCHOOL)
    other = {**says, "pack": {"name": "x", "version": "0" * 64}}
    assert notice_digest(says) == notice_digest(other)
