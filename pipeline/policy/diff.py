"""Two packs' rules side by side: what a change of pack adds, removes and changes.

Each pack is laid out flat, a value per (section, item, field): categories (what each
covers, whether special), recipients (name) and their permissions per kind of sharing
(categories, lawful bases, Art 9 conditions, channels, gateway, purpose), retention
(period, counted from, source), and the pack's other settings. The difference is then
a row for every place where the two disagree, in a stable order a DPO can read top to
bottom. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pipeline.policy.pack import PackSpec, Policy, RetentionSpec

Change = Literal["added", "removed", "changed"]
Place = tuple[str, str, str]  # section, item, field

SECTIONS = ("categories", "recipients", "permissions", "retention", "settings")


@dataclass(frozen=True, slots=True)
class Difference:
    """One place where the packs differ: ``old`` None where the new pack adds it, ``new``
    None where it removes it."""

    section: str
    item: str
    field: str
    old: Any
    new: Any

    @property
    def change(self) -> Change:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "item": self.item,
            "field": self.field,
            "change": self.change,
            "old": self.old,
            "new": self.new,
        }


def _period(spec: RetentionSpec) -> str:
    parts = [
        f"{n} {unit}{'' if n == 1 else 's'}"
        for n, unit in ((spec.years, "year"), (spec.months, "month"), (spec.days, "day"))
        if n
    ]
    return " ".join(parts) or "0 days"


def laid_out(spec: PackSpec) -> dict[Place, Any]:
    """The pack's rules, a value per place (lists sorted, so order in the YAML is no
    difference)."""
    out: dict[Place, Any] = {}
    for name, category in spec.categories.items():
        out["categories", name, "covers"] = category.covers
        out["categories", name, "special"] = category.special
    for rid, recipient in spec.recipients.items():
        out["recipients", rid, "name"] = recipient.name
        for kind, p in recipient.permissions.items():
            item = f"{rid} {kind}"
            out["permissions", item, "categories"] = sorted(p.categories)
            out["permissions", item, "lawful_bases"] = sorted(p.lawful_bases)
            out["permissions", item, "special_conditions"] = sorted(p.special_conditions)
            out["permissions", item, "channels"] = sorted(p.channels)
            out["permissions", item, "gateway"] = p.gateway
            if p.purpose is not None:
                out["permissions", item, "purpose"] = p.purpose
    retention = {"default": spec.retention.default, **spec.retention.categories}
    for name, kept in retention.items():
        out["retention", name, "period"] = _period(kept)
        out["retention", name, "counted_from"] = kept.counted_from
        if kept.source:
            out["retention", name, "source"] = kept.source
    ledger = spec.ledger_kept
    out["settings", "ledger_retention", "period"] = _period(
        RetentionSpec(
            years=ledger.years, months=ledger.months, days=ledger.days, counted_from="left"
        )
    )
    out["settings", "transfers", "deadline_school_days"] = spec.transfers.deadline_school_days
    out["settings", "closure_dates", "days"] = sorted(d.isoformat() for d in spec.closure_dates)
    out["settings", "plain_channels", "channels"] = sorted(spec.plain_channels)
    out["settings", "severity", "high_pupil_count"] = spec.severity.high_pupil_count
    return out


def pack_differences(old: Policy, new: Policy) -> list[Difference]:
    """Every place the packs' rules differ, section by section, item by item."""
    before, after = laid_out(old.spec), laid_out(new.spec)
    places = sorted(
        set(before) | set(after), key=lambda place: (SECTIONS.index(place[0]), *place[1:])
    )
    return [
        Difference(*place, before.get(place), after.get(place))
        for place in places
        if before.get(place) != after.get(place)
    ]
