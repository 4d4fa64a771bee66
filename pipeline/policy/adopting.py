"""The packs in force after adoptions: the deployment's packs (settings and register), each
replaced by the latest pack adopted for it.

An adoption names the school of the register it is for (its URN), or none: every school
(with no register, the one pack that decides every event). A later adoption for every
school replaces the earlier ones for each school too. Pure: the adoptions are read from
the ledger by :mod:`pipeline.ledger.writing.adoption`, and each pack is compiled here from the
text it holds, for its school's own local authority.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from pipeline.policy.pack import Policy, parse_pack
from pipeline.policy.schools import Schools


@dataclass(frozen=True, slots=True)
class Adopted:
    """A pack adopted: the entry that recorded it, the school it is for (None: every
    school), the pack's YAML text and what it was called."""

    seq: int
    school: str | None
    text: str
    source: str


def in_force(
    policy: Policy, schools: Schools | None, adoptions: Iterable[Adopted]
) -> tuple[Policy, Schools | None]:
    """The default pack and the register, with ``adoptions`` (in seq order) applied."""
    compiled: dict[tuple[int, int | None], Policy] = {}

    def pack(adopted: Adopted, la: int | None) -> Policy:
        if (adopted.seq, la) not in compiled:
            compiled[adopted.seq, la] = parse_pack(adopted.text, adopted.source, la)
        return compiled[adopted.seq, la]

    policies = dict(schools.policies) if schools is not None else {}
    for adopted in adoptions:
        if schools is None:
            if adopted.school is None:  # one pack decides every school's events
                policy = pack(adopted, None)
        elif adopted.school is None:
            policies = {urn: pack(adopted, schools.las.get(urn)) for urn in schools.names}
        elif adopted.school in schools.names:
            policies[adopted.school] = pack(adopted, schools.las.get(adopted.school))
    if schools is None:
        return policy, None
    return policy, replace(schools, policies=policies)
