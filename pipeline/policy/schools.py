"""A deployment's schools: the register a trust or a local authority gives
(``--schools FILE``, ``SHARING_AUDIT_SCHOOLS``), and the pack that decides each school's
events, compiled for the school's own local authority.

    schools:
      - urn: "116234"
        name: Westfields Junior School
        la: 850                  # the school's local authority code
        pack: england-schools    # a shipped pack or a YAML path; optional
        address: "Westfields Road, Eastleigh, Hampshire SO50 1AA"            # optional
        dpo_contact: "Data Protection Officer, dpo@westfields.example"       # optional
        webhooks: [https://westfields.example/hooks/incidents]   # optional
        emails: [dpo@westfields.example]                          # optional

The name, address and DPO contact are what a subject-access report tells a parent of the
school that holds their child's data (the controller, UK GDPR Art 15). A deployment of one
school, with no register, gives them in its settings (:func:`parse_school_settings`).

No file is read here (the caller passes the register's text and compiles the packs):
deciding which pack decides an event stays a pure question of its ``source``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pipeline.policy.pack import PackError, Policy, validated


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Printed on a letter to a parent: no control characters (a pasted escape or a tab), and
# nothing blank that would leave the letter saying nothing.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"(?:\+|\b0)[0-9][0-9 ()-]{8,}[0-9]")
_WEB = re.compile(r"\b(?:https?://|www\.)\S+")


def _one_line(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("is blank: give the text a parent should read")
    if "\n" in value or _CONTROL.search(value):
        raise ValueError("must be one line of text, without tabs or control characters")
    return value


def _address(value: str) -> str:
    lines = [line.strip() for line in value.strip().splitlines()]
    if not any(lines):
        raise ValueError("is blank: give the school's postal address")
    if any(_CONTROL.search(line) for line in lines):
        raise ValueError("must be text, without tabs or control characters")
    return "\n".join(line for line in lines if line)


def _dpo_contact(value: str) -> str:
    value = _one_line(value)
    if not (_EMAIL.search(value) or _PHONE.search(value) or _WEB.search(value)):
        raise ValueError(
            "give an email address, a telephone number or a web address by which a parent "
            "can reach the Data Protection Officer"
        )
    return value


SchoolName = Annotated[str, Field(max_length=200), AfterValidator(_one_line)]
Address = Annotated[str, Field(max_length=500), AfterValidator(_address)]
DpoContact = Annotated[str, Field(max_length=300), AfterValidator(_dpo_contact)]


class SchoolSpec(_Strict):
    urn: str = Field(pattern=r"^[0-9]{6}$", description="the school's URN, 6 digits")
    name: SchoolName
    la: int = Field(ge=100, le=999, description="the school's local authority code")
    pack: str | None = Field(default=None, description="a shipped pack or a YAML path")
    webhooks: list[Annotated[str, Field(pattern=r"^https?://\S+$")]] = Field(
        default_factory=list, description="where the school's own incident notices are posted"
    )
    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(
        default_factory=list, description="whom the school's own incident notices are emailed"
    )
    address: Address | None = Field(default=None, description="the school's postal address")
    dpo_contact: DpoContact | None = Field(
        default=None, description="how a parent reaches the school's Data Protection Officer"
    )


class SchoolSettings(_Strict):
    """The one school of a deployment with no register, as its settings give it (each
    field named by its variable, so that a mistake names the variable to fix)."""

    name: SchoolName | None = Field(default=None, alias="SHARING_AUDIT_SCHOOL_NAME")
    address: Address | None = Field(default=None, alias="SHARING_AUDIT_SCHOOL_ADDRESS")
    dpo_contact: DpoContact | None = Field(default=None, alias="SHARING_AUDIT_SCHOOL_DPO_CONTACT")


class RegisterSpec(_Strict):
    schools: list[SchoolSpec] = Field(min_length=1)


def parse_schools(text: str, source: str) -> list[SchoolSpec]:
    """The schools of a register's YAML text; :class:`PackError` naming every problem and
    where (``source`` names the file)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PackError(source, [f"not valid YAML: {exc}"], unreadable=True) from None
    spec = validated(RegisterSpec, document, source)
    seen: dict[str, int] = {}
    problems = []
    for i, school in enumerate(spec.schools):
        if school.urn in seen:
            problems.append(f"schools[{i}].urn: {school.urn} is also schools[{seen[school.urn]}]")
        seen.setdefault(school.urn, i)
    if problems:
        raise PackError(source, problems)
    return spec.schools


@dataclass(frozen=True, slots=True)
class Controller:
    """Who holds a pupil's data and answers for it (the controller, UK GDPR Art 15): the
    school, by the name, address and Data Protection Officer a parent writes to. A field
    not given is None: the report says it is missing rather than print a blank."""

    urn: str | None = None
    name: str | None = None
    address: str | None = None
    dpo_contact: str | None = None

    def missing(self) -> list[str]:
        """What a parent would need and is not given, in words."""
        named = (
            ("the school's name", self.name),
            ("its address", self.address),
            ("its Data Protection Officer's contact", self.dpo_contact),
        )
        return [what for what, value in named if not value]


def parse_school_settings(values: Mapping[str, str | None], source: str) -> Controller | None:
    """The deployment's one school from its settings (``SHARING_AUDIT_SCHOOL_NAME``,
    ``..._ADDRESS``, ``..._DPO_CONTACT``: the variables unset are left out), None when
    none is set; :class:`PackError` naming each variable given wrongly (``source`` says
    where they came from)."""
    given = {name: value for name, value in values.items() if value is not None}
    if not given:
        return None
    spec = validated(SchoolSettings, given, source)
    return Controller(None, spec.name, spec.address, spec.dpo_contact)


@dataclass(frozen=True, slots=True)
class Schools:
    """The register compiled: each school's policy by URN. An event is decided by the
    policy of its source school; one from a school outside the register by none."""

    names: Mapping[str, str]
    policies: Mapping[str, Policy]
    #: Each school's own notice targets: (webhook URLs, email addresses), by URN.
    notices: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    #: Each school as its subject-access reports name it to a parent, by URN.
    controllers: Mapping[str, Controller] = field(default_factory=dict)
    #: Each school's local authority code, by URN: what a pack's ``{LA}`` is compiled for.
    las: Mapping[str, int] = field(default_factory=dict)

    def policy_for(self, source: str) -> Policy | None:
        return self.policies.get(source.removeprefix("/schools/"))

    def refusal(self, source: str) -> str:
        """Why an event from ``source`` is not decided: the school is not registered."""
        return (
            f"source {source}: the school is not in this deployment's register of schools "
            f"({len(self.names)} schools)"
        )


def policy_of(schools: Schools | None, school: str | None, default: Policy) -> Policy:
    """The pack that decides (and explains) a school's entries: its own under a register,
    else ``default`` (no register, or an entry of no registered school)."""
    if schools is None or school is None:
        return default
    return schools.policies.get(school, default)


def controller_of(schools: Schools | None, urn: str | None, one: Controller | None) -> Controller:
    """Who answers for a school's entries: the school as the register gives it; without a
    register, the deployment's one school as its settings give it (``one``); else a
    school known by its URN alone."""
    if schools is not None:
        return schools.controllers.get(urn or "") or Controller(urn, schools.names.get(urn or ""))
    return replace(one, urn=urn) if one is not None else Controller(urn)
