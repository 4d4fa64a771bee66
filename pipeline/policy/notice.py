"""The privacy notice for pupils and parents (UK GDPR Art 13 and 14), made from the pack.

A school's notice is usually written by hand, apart from the pack that enforces what it
says, and the two drift. Here the notice is made from the pack and the register: first
what it says (:func:`notice_of`: the controller, each recipient with what is shared, why
and under which law, retention, rights), kept as plain data so that a published notice
can be stored in the ledger and compared, item by item, with the sharing the ledger
records and with what a later pack would say (:func:`notice_changes`); then the same
content as a document of headed sections (:func:`notice_document`), which the HTML
template and :func:`notice_markdown` lay out without adding a word of their own.

Pure: no file, clock or database. Sentences are short, for a parent to read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pipeline.canonical import canonical_json
from pipeline.policy.pack import ANY_SCHOOL, Policy
from pipeline.policy.schools import Controller

#: What a notice says, as plain data (JSON): stored with a published notice.
Says = dict[str, Any]

#: When each kind of sharing happens, as a parent reads it.
WHEN = {
    "census": "In the school census",
    "transfer": "When your child moves to another school",
    "referral": "When we ask for help or support for your child",
}
#: Where a retention period starts (the pack's ``counted_from``), as a parent reads it.
COUNTED_FROM = {
    "left": "after your child leaves the school",
    "dob": "from your child's date of birth",
    "record": "from the date of the record",
}
#: A notice's sections, in order, by their ids: what tests and links find them by.
SECTIONS = (
    "who-we-are",
    "why",
    "what",
    "who-we-share-with",
    "how-long",
    "your-rights",
    "complaints",
    "about",
)


def notice_of(policy: Policy, controller: Controller) -> Says:
    """What the notice of ``controller`` (the school) says under ``policy`` (its pack,
    compiled for its local authority)."""
    spec = policy.spec
    words = spec.notice_words
    recipients: dict[str, Any] = {}
    bases: set[str] = set()
    conditions: set[str] = set()
    for rid, recipient in spec.recipients.items():
        sharing = []
        for kind, permission in recipient.permissions.items():
            special = [c for c in permission.categories if spec.categories[c].special]
            needed = [str(c) for c in permission.special_conditions] if special else []
            bases.update(permission.lawful_bases)
            conditions.update(needed)
            sharing.append(
                {
                    "kind": kind,
                    "purpose": permission.purpose,
                    "categories": list(permission.categories),
                    "lawful_bases": [str(b) for b in permission.lawful_bases],
                    "special_conditions": needed,
                    "gateway": permission.gateway,
                }
            )
        name = words.recipients.get(rid) or recipient.name
        recipients[rid] = {"name": name[:1].upper() + name[1:], "sharing": sharing}
    return {
        "controller": {
            "urn": controller.urn,
            "name": controller.name,
            "la": spec.la,
            "address": controller.address,
            "dpo_contact": controller.dpo_contact,
        },
        "pack": {"name": policy.name, "version": policy.version},
        "categories": {
            name: {
                "name": words.categories.get(name) or name.replace("_", " "),
                "covers": category.covers,
                "special": category.special,
            }
            for name, category in spec.categories.items()
        },
        "recipients": recipients,
        "lawful_bases": {
            str(b): words.lawful_bases[b].model_dump() for b in words.lawful_bases if b in bases
        },
        "special_conditions": {
            str(c): words.special_conditions[c].model_dump()
            for c in words.special_conditions
            if c in conditions
        },
        "retention": _retention(policy),
        "kept_by_the_log": policy.ledger_retention.describe(),
        "complaints": words.complaints,
    }


def _retention(policy: Policy) -> list[dict[str, Any]]:
    """How long each category is kept: a row per category with its own period, then the
    period of every other category."""
    spec = policy.spec.retention
    own = [
        {
            "categories": [name],
            "period": policy.retention_for(name).describe(),
            "counted_from": ret.counted_from,
            "source": ret.source,
        }
        for name, ret in spec.categories.items()
    ]
    rest = [name for name in policy.spec.categories if name not in spec.categories]
    default = {
        "categories": rest,
        "period": policy.default_retention.describe(),
        "counted_from": spec.default.counted_from,
        "source": spec.default.source,
    }
    return [*own, default] if rest else own


def notice_digest(says: Mapping[str, Any]) -> str:
    """The SHA-256 of what a notice tells a parent: the pack's version aside, so that a
    pack change that alters no word of the notice leaves the notice in force as it is."""
    return hashlib.sha256(
        canonical_json({k: v for k, v in says.items() if k != "pack"})
    ).hexdigest()


def missing(says: Mapping[str, Any]) -> list[str]:
    """What a parent would need the notice to say and it cannot, in words."""
    controller = Controller(
        says["controller"]["urn"],
        says["controller"]["name"],
        says["controller"]["address"],
        says["controller"]["dpo_contact"],
    )
    gaps = controller.missing()
    for rid, recipient in says["recipients"].items():
        for sharing in recipient["sharing"]:
            if not sharing["purpose"]:
                gaps.append(f"why the school shares with {recipient['name']} ({rid}: no purpose)")
    return gaps


# -- comparing two notices -------------------------------------------------------------------


def shared_with(says: Mapping[str, Any]) -> dict[str, set[str]]:
    """Each recipient the notice names (by the pack's id) and the categories it says are
    shared with them."""
    return {
        rid: {c for sharing in recipient["sharing"] for c in sharing["categories"]}
        for rid, recipient in says["recipients"].items()
    }


def shared_for(says: Mapping[str, Any]) -> dict[str, set[str]]:
    """Each recipient the notice names and the kinds of sharing (``census``, ``transfer``,
    ``referral``) it says the school shares with them for."""
    return {
        rid: {sharing["kind"] for sharing in recipient["sharing"]}
        for rid, recipient in says["recipients"].items()
    }


def named_as(says: Mapping[str, Any], recipient: str) -> str | None:
    """The id under which the notice names ``recipient`` (``school:{URN}`` for any school),
    or None when it does not name them."""
    if recipient in says["recipients"]:
        return recipient
    if ANY_SCHOOL in says["recipients"] and recipient.startswith("school:"):
        return ANY_SCHOOL
    return None


def notice_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """How the notice ``new`` would tell a parent otherwise than ``old``, in words; empty
    when they say the same."""
    if notice_digest(old) == notice_digest(new):
        return []
    found: list[str] = []
    before, after = shared_with(old), shared_with(new)
    names = {r: v["name"] for says in (old, new) for r, v in says["recipients"].items()}
    for rid in sorted(after.keys() - before.keys()):
        found.append(f"a recipient it does not name: {names[rid]} ({rid})")
    for rid in sorted(before.keys() - after.keys()):
        found.append(f"a recipient the pack no longer permits: {names[rid]} ({rid})")
    for rid in sorted(before.keys() & after.keys()):
        for said, cats in (
            ("now", after[rid] - before[rid]),
            ("no longer", before[rid] - after[rid]),
        ):
            if cats:
                found.append(f"{names[rid]} ({rid}) is {said} sent: {', '.join(sorted(cats))}")
        if old["recipients"][rid] != new["recipients"][rid] and not (after[rid] ^ before[rid]):
            found.append(f"why or under which law it shares with {names[rid]} ({rid})")
    for part, said in (
        ("controller", "the school's details"),
        ("categories", "the kinds of information"),
        ("retention", "how long information is kept"),
        ("kept_by_the_log", "how long the record of sharing is kept"),
        ("lawful_bases", "the words for the lawful bases"),
        ("special_conditions", "the words for the Art 9 conditions"),
        ("complaints", "how to complain"),
    ):
        if old.get(part) != new.get(part):
            found.append(said)
    return found or ["its wording"]


# -- the document ----------------------------------------------------------------------------

BlockKind = Literal["p", "ul", "dl", "table", "missing"]


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph (``p``: ``items`` holds its one text), a list (``ul``), a list of
    terms and what they are (``dl``: pairs, a value one text or several), a table
    (``head`` and rows) or a warning that something is missing (``missing``: its items)."""

    kind: BlockKind
    items: tuple[Any, ...]
    head: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Section:
    """A headed part of the notice; ``parts`` are its own headed parts."""

    id: str
    heading: str
    blocks: tuple[Block, ...]
    parts: tuple[Section, ...] = ()


def _p(text: str) -> Block:
    return Block("p", (text,))


def _names(says: Mapping[str, Any], categories: Sequence[str]) -> str:
    return "; ".join(says["categories"][c]["name"] for c in categories)


def _law(entry: Mapping[str, str]) -> str:
    return f"{entry['words']} ({entry['law']})"


def notice_title(says: Mapping[str, Any]) -> str:
    name = says["controller"]["name"] or "Our school"
    return f"{name}: how we use and share pupil information"


def notice_document(says: Mapping[str, Any], made_on: date) -> tuple[Section, ...]:
    """The notice as a parent reads it, section by section (``made_on``: the day it was
    made, which it says)."""
    return (
        _who_we_are(says),
        _why(says),
        _what(says),
        _sharing(says),
        _how_long(says),
        _rights(says),
        _complaints(says),
        _about(says, made_on),
    )


def _who_we_are(says: Mapping[str, Any]) -> Section:
    c = says["controller"]
    name = c["name"] or "The school"
    facts = [("School", name)]
    if c["urn"]:
        facts.append(("School number (URN)", c["urn"]))
    if c["la"]:
        facts.append(("Local authority", f"LA {c['la']:03d}"))
    address = ", ".join(c["address"].splitlines()) if c["address"] else "not given"
    facts += [("Address", address), ("Data Protection Officer", c["dpo_contact"] or "not given")]
    blocks = [
        _p(
            f"{name} is responsible for the information it holds about its pupils. "
            "The law calls this being the data controller."
        ),
        _p(
            "Our Data Protection Officer (DPO) checks that we follow the law. You can contact them."
        ),
        Block("dl", tuple(facts)),
    ]
    gaps = missing(says)
    if gaps:
        blocks.append(Block("missing", tuple(gaps)))
    return Section("who-we-are", "Who we are", tuple(blocks))


def _why(says: Mapping[str, Any]) -> Section:
    purposes = dict.fromkeys(
        s["purpose"] for r in says["recipients"].values() for s in r["sharing"] if s["purpose"]
    )
    return Section(
        "why",
        "Why we use your child's information",
        (
            _p("We use it to teach and support your child, and to keep them safe."),
            _p("We share some of it with others. We do this:"),
            Block("ul", tuple(purposes)),
        ),
    )


def _what(says: Mapping[str, Any]) -> Section:
    rows = tuple(
        (c["name"], c["covers"], "Yes" if c["special"] else "No")
        for c in says["categories"].values()
    )
    return Section(
        "what",
        "What information we hold",
        (
            _p("These are the kinds of information we hold and may share."),
            _p('Some are "special category" information. The law protects these more.'),
            Block("table", rows, ("Information", "What it includes", "Special category")),
        ),
    )


def _sharing(says: Mapping[str, Any]) -> Section:
    parts = []
    for rid, recipient in says["recipients"].items():
        blocks = []
        for s in recipient["sharing"]:
            facts = [
                ("When", WHEN.get(s["kind"], s["kind"])),
                ("Why", s["purpose"] or "not given"),
                ("What we share", _names(says, s["categories"])),
                (
                    "Our lawful basis (one of these)",
                    tuple(_law(says["lawful_bases"][b]) for b in s["lawful_bases"]),
                ),
            ]
            if s["special_conditions"]:
                facts.append(
                    (
                        "For special category information (one of these)",
                        tuple(_law(says["special_conditions"][c]) for c in s["special_conditions"]),
                    )
                )
            facts.append(("The law that allows it", s["gateway"]))
            blocks.append(Block("dl", tuple(facts)))
        parts.append(Section(f"to-{_anchor(rid)}", recipient["name"], tuple(blocks)))
    return Section(
        "who-we-share-with",
        "Who we share it with, and why",
        (
            _p("We only share information when the law allows it."),
            _p("We share only what each one needs. We send it securely."),
        ),
        tuple(parts),
    )


def _anchor(rid: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in rid).strip("-")


def _how_long(says: Mapping[str, Any]) -> Section:
    rows = tuple(
        (
            _names(says, r["categories"]),
            r["period"],
            COUNTED_FROM.get(r["counted_from"], r["counted_from"]),
            r["source"] or "not given",
        )
        for r in says["retention"]
    )
    return Section(
        "how-long",
        "How long we keep it",
        (
            _p("We keep information only as long as we need it. Then we destroy it safely."),
            Block("table", rows, ("Information", "How long", "Counted", "Why")),
            _p(
                "We also keep a record of each time we share information. We keep it for "
                f"{says['kept_by_the_log']} after the last of the times above ends. "
                "It lets us show whom we shared it with, and why."
            ),
        ),
    )


def _on(says: Mapping[str, Any], basis: str) -> list[str]:
    return [
        r["name"]
        for r in says["recipients"].values()
        if any(basis in s["lawful_bases"] for s in r["sharing"])
    ]


def _rights(says: Mapping[str, Any]) -> Section:
    rights = [
        "To ask for a copy of the information we hold about your child.",
        "To ask us to correct information that is wrong.",
    ]
    agreed = _on(says, "consent")
    if agreed:
        rights.append(
            "To ask us to delete information we hold because you agreed to it. This applies "
            f"to what we share with: {', '.join(agreed)}. Where the law says we must keep "
            "information, we cannot delete it."
        )
        rights.append("To change your mind about anything you agreed to.")
    else:
        rights.append(
            "To ask us to delete information. Where the law says we must keep it, we cannot."
        )
    task = _on(says, "public_task")
    if task:
        rights.append(
            "To object to how we use information for our job as a school. This applies to "
            f"what we share with: {', '.join(task)}."
        )
    rights.append("To complain to the Information Commissioner's Office (ICO).")
    return Section(
        "your-rights",
        "Your rights",
        (
            _p("You have rights over your child's information. Older children have them too."),
            Block("ul", tuple(rights)),
            _p("To use any of these rights, contact our Data Protection Officer."),
        ),
    )


def _complaints(says: Mapping[str, Any]) -> Section:
    dpo = says["controller"]["dpo_contact"]
    first = (
        f"Please tell us first. Contact our Data Protection Officer: {dpo}."
        if dpo
        else "Please tell us first. Contact the school office."
    )
    return Section(
        "complaints",
        "If you are not happy",
        (_p(first), _p("You can also complain to the ICO:"), _p(says["complaints"])),
    )


def _about(says: Mapping[str, Any], made_on: date) -> Section:
    pack = says["pack"]
    return Section(
        "about",
        "About this notice",
        (
            _p(f"This notice was made on {made_on.strftime('%-d %B %Y')}."),
            _p(
                "It was made from the rules our systems check every sharing against "
                f"(the policy pack {pack['name']}, version {pack['version']})."
            ),
        ),
    )


def notice_markdown(says: Mapping[str, Any], made_on: date) -> str:
    """The notice as Markdown: the same sections as the HTML, laid out for a web page."""
    out = [f"# {notice_title(says)}", ""]
    for section in notice_document(says, made_on):
        _markdown(section, 2, out)
    return "\n".join(out).rstrip() + "\n"


def _markdown(section: Section, level: int, out: list[str]) -> None:
    out += [f"{'#' * level} {section.heading}", ""]
    for block in section.blocks:
        if block.kind == "p":
            out.append(block.items[0])
        elif block.kind in ("ul", "missing"):
            if block.kind == "missing":
                out.append("**Missing from this notice:**")
            out += [f"- {item}" for item in block.items]
        elif block.kind == "dl":
            for term, value in block.items:
                if isinstance(value, tuple):
                    out.append(f"- **{term}:**")
                    out += [f"  - {each}" for each in value]
                else:
                    out.append(f"- **{term}:** {value}")
        else:
            out.append("| " + " | ".join(block.head) + " |")
            out.append("|" + " --- |" * len(block.head))
            out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in block.items]
        out.append("")
    for part in section.parts:
        _markdown(part, level + 1, out)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
