"""A deployment's schools: the register a trust or a local authority gives
(``--schools FILE``, ``SHARING_AUDIT_SCHOOLS``), and the pack that decides each school's
events, compiled for the school's own local authority.

    schools:
      - urn: "116234"
        name: Westfields Junior School
        la: 850                  # the school's local authority code
        pack: england-schools    # a shipped pack or a YAML path; optional
        webhooks: [https://westfields.example/hooks/incidents]   # optional
        emails: [dpo@westfields.example]                          # optional

No file is read here (the caller passes the register's text and compiles the packs):
deciding which pack decides an event stays a pure question of its ``source``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field

from pipeline.policy.pack import PackError, Policy, validated


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SchoolSpec(_Strict):
    urn: str = Field(pattern=r"^[0-9]{6}$", description="the school's URN, 6 digits")
    name: str = Field(min_length=1)
    la: int = Field(ge=100, le=999, description="the school's local authority code")
    pack: str | None = Field(default=None, description="a shipped pack or a YAML path")
    webhooks: list[Annotated[str, Field(pattern=r"^https?://\S+$")]] = Field(
        default_factory=list, description="where the school's own incident notices are posted"
    )
    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(
        default_factory=list, description="whom the school's own incident notices are emailed"
    )


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
class Schools:
    """The register compiled: each school's policy by URN. An event is decided by the
    policy of its source school; one from a school outside the register by none."""

    names: Mapping[str, str]
    policies: Mapping[str, Policy]
    #: Each school's own notice targets: (webhook URLs, email addresses), by URN.
    notices: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)

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
