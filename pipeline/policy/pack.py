"""Policy packs: what a school permits, as data.

A pack is a YAML document a DPO can read and edit. This module turns its text into a
validated, compiled :class:`Policy` and gives it a version (the SHA-256 of its canonical
form) so every ledger entry can say exactly which policy decided it. No file is read here:
callers pass the text and a name for it, which keeps the core free of I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from pipeline.canonical import canonical_json
from schemas.events import SCHOOL_RECIPIENT_PATTERN, Channel, LawfulBasis, SpecialCondition
from schemas.problems import location, message

EventKind = Literal["census", "transfer", "referral"]
RetentionStart = Literal["record", "dob", "left"]

#: The recipient id in a pack that stands for "any well-formed school:{URN}".
ANY_SCHOOL = "school:{URN}"
_RECIPIENT_ID = re.compile(r"^(dfe|la:[0-9]{3}|school:[0-9]{6}|agency:[a-z0-9][a-z0-9-]*)$")
_SCHOOL = re.compile(SCHOOL_RECIPIENT_PATTERN)
_CATEGORY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    # A typo in a pack must be an error, never a silently ignored key.
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategorySpec(_Strict):
    covers: str
    special: bool = False


class PermissionSpec(_Strict):
    categories: list[str] = Field(min_length=1)
    lawful_bases: list[LawfulBasis] = Field(min_length=1)
    special_conditions: list[SpecialCondition] = Field(default_factory=list)
    channels: list[Channel] = Field(min_length=1)
    gateway: str = Field(min_length=1, description="the legal gateway, shown in reports")
    purpose: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="why the school shares this, as a parent reads it in a subject-access report",
    )

    @model_serializer(mode="wrap")
    def _as_before_purposes(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A row giving no purpose is written as before packs could give one, so that a
        school's pack keeps its version (and its entries their "policy in force now")."""
        row: dict[str, Any] = handler(self)
        if self.purpose is None:
            row.pop("purpose", None)
        return row


class RecipientSpec(_Strict):
    name: str
    permissions: dict[EventKind, PermissionSpec] = Field(min_length=1)


class RetentionSpec(_Strict):
    years: int = Field(default=0, ge=0)
    months: int = Field(default=0, ge=0)
    days: int = Field(default=0, ge=0)
    counted_from: RetentionStart
    source: str = ""


class LedgerRetentionSpec(_Strict):
    """How long the ledger keeps a pupil identifiable after the last day any school must
    keep any of their records (:func:`pipeline.policy.retention.last_kept`)."""

    years: int = Field(default=0, ge=0)
    months: int = Field(default=0, ge=0)
    days: int = Field(default=0, ge=0)
    source: str = ""


#: The ledger's own retention when a pack gives none: a claim about how a pupil's data
#: was shared can be brought for six years, and the ledger is the school's evidence.
DEFAULT_LEDGER_RETENTION = LedgerRetentionSpec(
    years=6,
    source=(
        "Limitation Act 1980 ss. 2 and 5: a claim in tort or contract (a complaint of how "
        "the pupil's data was shared, say) can be brought for six years"
    ),
)
#: What a pack's ledger retention is counted from, as ``policy show`` names it.
LAST_KEPT = "last_kept"


class RetentionTable(_Strict):
    default: RetentionSpec
    categories: dict[str, RetentionSpec] = Field(default_factory=dict)


class TransferSpec(_Strict):
    deadline_school_days: int = Field(ge=1)


class SeveritySpec(_Strict):
    high_pupil_count: int = Field(ge=1)


class MisFileSpec(_Strict):
    """How the events read from one kind of MIS file are filled in: the sharing's basis,
    condition and channel (the same for every such file), and which category each
    element of a pupil's record is. An element mapped to null carries no pupil data (a
    supplier's id); one not mapped at all is reported as a category of its own name, so
    that the rules decide it (``category.unknown``)."""

    lawful_basis: LawfulBasis
    special_condition: SpecialCondition | None = Field(
        default=None, description="given when a special category is among those sent"
    )
    channel: Channel
    source: str = Field(default="", description="the law or guidance followed")
    categories: dict[str, str | None] = Field(min_length=1)


class MisFilesSpec(_Strict):
    ctf: MisFileSpec
    census: MisFileSpec


class LawSpec(_Strict):
    """A lawful basis or an Art 9 condition as a privacy notice says it to a parent: in
    plain words, and the law it stands on."""

    words: str = Field(min_length=1, max_length=500)
    law: str = Field(min_length=1, max_length=300)


class NoticeSpec(_Strict):
    """The words a privacy notice needs that the rules do not: what each lawful basis and
    Art 9 condition means and the law behind it, each category's name as a parent says
    it, and where to complain. Each is optional: what a pack leaves out is taken from
    :data:`DEFAULT_NOTICE`, so a pack written before notices were made stays valid."""

    lawful_bases: dict[LawfulBasis, LawSpec] = Field(default_factory=dict)
    special_conditions: dict[SpecialCondition, LawSpec] = Field(default_factory=dict)
    categories: dict[str, str] = Field(
        default_factory=dict, description="a category's name as a parent reads it"
    )
    recipients: dict[str, str] = Field(
        default_factory=dict, description="a recipient's name as a parent reads it"
    )
    complaints: str | None = Field(
        default=None, min_length=1, max_length=500, description="how to complain to the ICO"
    )


#: The notice's words where a pack gives none: UK GDPR Art 6(1) and Art 9(2), and the
#: Data Protection Act 2018 Sch 1 conditions a school relies on.
DEFAULT_NOTICE = NoticeSpec(
    lawful_bases={
        LawfulBasis.CONSENT: LawSpec(
            words="You have agreed to it. You can change your mind at any time.",
            law="UK GDPR Article 6(1)(a)",
        ),
        LawfulBasis.CONTRACT: LawSpec(
            words="We need it for a contract with you.", law="UK GDPR Article 6(1)(b)"
        ),
        LawfulBasis.LEGAL_OBLIGATION: LawSpec(
            words="The law says we must.", law="UK GDPR Article 6(1)(c)"
        ),
        LawfulBasis.VITAL_INTERESTS: LawSpec(
            words="It is needed to protect someone's life.", law="UK GDPR Article 6(1)(d)"
        ),
        LawfulBasis.PUBLIC_TASK: LawSpec(
            words="We need it to do our job as a school, which the law gives us.",
            law="UK GDPR Article 6(1)(e)",
        ),
        LawfulBasis.LEGITIMATE_INTERESTS: LawSpec(
            words="It is in our or someone else's proper interest, and it does not harm yours.",
            law="UK GDPR Article 6(1)(f)",
        ),
    },
    special_conditions={
        SpecialCondition.EXPLICIT_CONSENT: LawSpec(
            words="You have clearly agreed to it.", law="UK GDPR Article 9(2)(a)"
        ),
        SpecialCondition.EMPLOYMENT_SOCIAL_PROTECTION: LawSpec(
            words="Social care or social protection law says we must.",
            law="UK GDPR Article 9(2)(b); Data Protection Act 2018 Schedule 1 paragraph 1",
        ),
        SpecialCondition.VITAL_INTERESTS: LawSpec(
            words="It is needed to protect someone's life, and they cannot agree to it.",
            law="UK GDPR Article 9(2)(c)",
        ),
        SpecialCondition.SUBSTANTIAL_PUBLIC_INTEREST: LawSpec(
            words="It is in the public interest, under a law that allows it.",
            law="UK GDPR Article 9(2)(g); Data Protection Act 2018 Schedule 1 paragraph 6",
        ),
        SpecialCondition.HEALTH_SOCIAL_CARE: LawSpec(
            words="It is needed for health or social care.",
            law="UK GDPR Article 9(2)(h); Data Protection Act 2018 Schedule 1 paragraph 2",
        ),
        SpecialCondition.ARCHIVING_RESEARCH: LawSpec(
            words="It is needed for research or statistics, with safeguards.",
            law="UK GDPR Article 9(2)(j); Data Protection Act 2018 Schedule 1 paragraph 4",
        ),
    },
    complaints=(
        "Information Commissioner's Office (ICO), Wycliffe House, Water Lane, Wilmslow, "
        "Cheshire SK9 5AF. Telephone 0303 123 1113. Online: https://ico.org.uk/make-a-complaint"
    ),
)


class PackSpec(_Strict):
    """The YAML document, field for field."""

    pack: str = Field(min_length=1)
    description: str = ""
    la: int | None = Field(
        default=None,
        ge=100,
        le=999,
        description="the local authority put for {LA} when no register of schools gives one",
    )
    categories: dict[str, CategorySpec] = Field(min_length=1)
    recipients: dict[str, RecipientSpec] = Field(min_length=1)
    retention: RetentionTable
    transfers: TransferSpec
    closure_dates: list[date] = Field(default_factory=list)
    plain_channels: list[Channel] = Field(
        default_factory=list, description="channels never allowed for a special category"
    )
    severity: SeveritySpec
    files: MisFilesSpec | None = Field(
        default=None, description="reading Common Transfer Files and census returns"
    )
    ledger_retention: LedgerRetentionSpec | None = Field(
        default=None,
        description="how long the ledger keeps a pupil identifiable after their records' "
        "last retention period ends (default: DEFAULT_LEDGER_RETENTION)",
    )

    notice: NoticeSpec | None = Field(
        default=None,
        description="the privacy notice's words: lawful bases, Art 9 conditions, category "
        "names, complaints (default: DEFAULT_NOTICE)",
    )

    @property
    def ledger_kept(self) -> LedgerRetentionSpec:
        """The pack's ledger retention, or the default when it gives none."""
        return self.ledger_retention or DEFAULT_LEDGER_RETENTION

    @property
    def notice_words(self) -> NoticeSpec:
        """The notice's words: the pack's own, each one it leaves out the default's."""
        given = self.notice or NoticeSpec()
        return NoticeSpec(
            lawful_bases={**DEFAULT_NOTICE.lawful_bases, **given.lawful_bases},
            special_conditions={**DEFAULT_NOTICE.special_conditions, **given.special_conditions},
            categories=given.categories,
            recipients=given.recipients,
            complaints=given.complaints or DEFAULT_NOTICE.complaints,
        )


class PackError(Exception):
    """A pack that cannot be used, with every problem found and where it is."""

    def __init__(self, source: str, problems: list[str], unreadable: bool = False) -> None:
        self.source = source
        self.problems = problems
        #: The file could not be read as YAML at all (missing, unreadable, not YAML),
        #: rather than read and found wrong.
        self.unreadable = unreadable
        super().__init__(f"{source}: " + f"\n{source}: ".join(problems))


@dataclass(frozen=True, slots=True)
class Permission:
    """One row of the permitted-recipients table, compiled for fast membership tests."""

    recipient: str
    kind: str
    categories: frozenset[str]
    lawful_bases: frozenset[str]
    special_conditions: frozenset[str]
    channels: frozenset[str]
    gateway: str
    purpose: str | None = None


@dataclass(frozen=True, slots=True)
class Retention:
    years: int
    months: int
    days: int
    counted_from: str

    def describe(self) -> str:
        parts = [
            f"{n} {unit}{'' if n == 1 else 's'}"
            for n, unit in ((self.years, "year"), (self.months, "month"), (self.days, "day"))
            if n
        ]
        return " ".join(parts) or "0 days"


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated pack, compiled for the decision engine. Immutable and hashable."""

    name: str
    version: str
    spec: PackSpec = field(compare=False, repr=False)
    categories: frozenset[str]
    special: frozenset[str]
    permissions: dict[tuple[str, str], Permission] = field(compare=False, repr=False)
    recipients: frozenset[str]
    retention: dict[str, Retention] = field(compare=False, repr=False)
    default_retention: Retention
    #: How long the ledger keeps a pupil identifiable after their records' last period.
    ledger_retention: Retention
    transfer_deadline: int
    closure_dates: tuple[date, ...]
    plain_channels: frozenset[str]
    high_pupil_count: int

    def recipient_key(self, recipient: str) -> str | None:
        """The pack's id for ``recipient``: itself, ``school:{URN}`` for any school, or None."""
        if recipient in self.recipients:
            return recipient
        if ANY_SCHOOL in self.recipients and is_school(recipient):
            return ANY_SCHOOL
        return None

    def recipient_name(self, recipient_key: str | None) -> str | None:
        """What the pack calls a recipient, for reports (None for one it does not know)."""
        return self.spec.recipients[recipient_key].name if recipient_key else None

    def permission_for(self, recipient_key: str | None, kind: str | None) -> Permission | None:
        """The permitted row, or None where the recipient or the event kind is unknown."""
        return self.permissions.get((recipient_key, kind)) if recipient_key and kind else None

    def retention_for(self, category: str) -> Retention:
        return self.retention.get(category, self.default_retention)


def is_school(recipient: str) -> bool:
    """Whether ``recipient`` is a well-formed ``school:{URN}``."""
    return _SCHOOL.match(recipient) is not None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would silently overwrite."""


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a key must be a plain value, not a list or mapping",
                key_node.start_mark,
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def _cross_reference_problems(spec: PackSpec) -> list[str]:
    problems: list[str] = []
    for name in spec.categories:
        if not _CATEGORY_NAME.match(name):
            problems.append(
                f"categories.{name}: a category name is lower-case letters, digits and _"
            )
    for rid, recipient in spec.recipients.items():
        if rid != ANY_SCHOOL and not _RECIPIENT_ID.match(rid):
            problems.append(
                f"recipients.{rid}: not a recipient id (dfe, la:NNN, school:NNNNNN, "
                f"{ANY_SCHOOL} or agency:name)"
            )
        for kind, perm in recipient.permissions.items():
            for i, cat in enumerate(perm.categories):
                if cat not in spec.categories:
                    problems.append(
                        f"recipients.{rid}.permissions.{kind}.categories[{i}]: "
                        f"{cat!r} is not a category defined under categories"
                    )
    for cat in spec.retention.categories:
        if cat not in spec.categories:
            problems.append(
                f"retention.categories.{cat}: {cat!r} is not a category defined under categories"
            )
    return problems + _files_problems(spec) + _period_problems(spec) + _notice_problems(spec)


def _notice_problems(spec: PackSpec) -> list[str]:
    """The notice's words name only categories and recipients the pack defines."""
    notice = spec.notice or NoticeSpec()
    return [
        f"notice.categories.{cat}: {cat!r} is not a category defined under categories"
        for cat in notice.categories
        if cat not in spec.categories
    ] + [
        f"notice.recipients.{rid}: {rid!r} is not a recipient defined under recipients"
        for rid in notice.recipients
        if rid not in spec.recipients
    ]


def _period_problems(spec: PackSpec) -> list[str]:
    """Every retention period, the ledger's own included, must be some time long."""
    periods: list[tuple[str, RetentionSpec | LedgerRetentionSpec]] = [
        ("retention.default", spec.retention.default),
        *((f"retention.categories.{c}", r) for c, r in spec.retention.categories.items()),
    ]
    if spec.ledger_retention is not None:
        periods.append(("ledger_retention", spec.ledger_retention))
    return [
        f"{where}: a retention period needs years, months or days"
        for where, ret in periods
        if not (ret.years or ret.months or ret.days)
    ]


def _files_problems(spec: PackSpec) -> list[str]:
    problems: list[str] = []
    for kind, mapping in (
        (("ctf", spec.files.ctf), ("census", spec.files.census)) if spec.files else ()
    ):
        seen: dict[str, str] = {}
        for element, category in mapping.categories.items():
            where = f"files.{kind}.categories.{element}"
            if element.lower() in seen:
                problems.append(
                    f"{where}: the same element as {seen[element.lower()]} (case aside)"
                )
            seen[element.lower()] = element
            if category is not None and category not in spec.categories:
                problems.append(f"{where}: {category!r} is not a category defined under categories")
    return problems


#: What a pack writes where a school's own local authority code goes.
LA_PLACEHOLDER = "{LA}"


def _with_la(value: Any, la: str) -> Any:
    """``value`` (a YAML document) with every ``{LA}`` in its keys and texts made ``la``."""
    if isinstance(value, str):
        return value.replace(LA_PLACEHOLDER, la)
    if isinstance(value, dict):
        return {_with_la(k, la): _with_la(v, la) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_la(v, la) for v in value]
    return value


Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], document: Any, source: str) -> Model:
    """``document`` (parsed YAML) as ``model``; :class:`PackError` listing every problem
    with its place in the file named ``source``."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise PackError(
            source,
            [
                f"{location(e['loc']) or '(top level)'}: {message(e)}"
                for e in exc.errors(include_url=False)
            ],
        ) from None


def parse_pack(text: str, source: str, la: int | None = None) -> Policy:
    """Validate and compile a pack's YAML text; ``source`` names it in error messages.

    ``la`` is the school's local authority, put wherever the pack writes ``{LA}`` (else
    the pack's own ``la``): one pack serves schools in any LA, each compiled for its own.
    Raises :class:`PackError` listing every problem with its path inside the pack.
    """
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown place)"
        raise PackError(source, [f"{where}: {exc.problem}"], unreadable=True) from None
    except yaml.YAMLError as exc:
        raise PackError(source, [f"not valid YAML: {exc}"], unreadable=True) from None
    if not isinstance(document, dict):
        raise PackError(source, ["(top level): a policy pack is a YAML mapping"])
    if LA_PLACEHOLDER in text:
        given = la if la is not None else document.get("la")
        if not isinstance(given, int) or not 100 <= given <= 999:
            raise PackError(
                source,
                [
                    "la: the pack writes {LA} for the school's local authority: give the "
                    "school's LA code in the register of schools, or la: NNN in the pack"
                ],
            )
        document = {**_with_la(document, f"{given:03d}"), "la": given}
    spec = validated(PackSpec, document, source)
    problems = _cross_reference_problems(spec)
    if problems:
        raise PackError(source, problems)
    return compile_pack(spec)


def canonical_pack(spec: PackSpec) -> bytes:
    """The pack's canonical JSON: key order, spacing and YAML style do not change it."""
    # A pack without a files section, or without the ledger's retention, keeps the version
    # it had before packs could have one.
    unset = {"files": spec.files, "ledger_retention": spec.ledger_retention, "notice": spec.notice}
    return canonical_json(
        spec.model_dump(mode="json", exclude={name for name, v in unset.items() if v is None})
    )


def compile_pack(spec: PackSpec) -> Policy:
    permissions: dict[tuple[str, str], Permission] = {
        (rid, kind): Permission(
            recipient=rid,
            kind=kind,
            categories=frozenset(p.categories),
            lawful_bases=frozenset(p.lawful_bases),
            special_conditions=frozenset(p.special_conditions),
            channels=frozenset(p.channels),
            gateway=p.gateway,
            purpose=p.purpose,
        )
        for rid, r in spec.recipients.items()
        for kind, p in r.permissions.items()
    }

    def retention(r: RetentionSpec) -> Retention:
        return Retention(r.years, r.months, r.days, r.counted_from)

    return Policy(
        name=spec.pack,
        version=hashlib.sha256(canonical_pack(spec)).hexdigest(),
        spec=spec,
        categories=frozenset(spec.categories),
        special=frozenset(n for n, c in spec.categories.items() if c.special),
        permissions=permissions,
        recipients=frozenset(spec.recipients),
        retention={c: retention(r) for c, r in spec.retention.categories.items()},
        default_retention=retention(spec.retention.default),
        ledger_retention=Retention(
            spec.ledger_kept.years, spec.ledger_kept.months, spec.ledger_kept.days, LAST_KEPT
        ),
        transfer_deadline=spec.transfers.deadline_school_days,
        closure_dates=tuple(sorted(set(spec.closure_dates))),
        plain_channels=frozenset(spec.plain_channels),
        high_pupil_count=spec.severity.high_pupil_count,
    )
