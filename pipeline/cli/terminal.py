"""How decisions and policies look to a person at a terminal (rich renderables)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from pipeline.checking import Result, Summary
from pipeline.policy.diff import Difference
from pipeline.policy.pack import LAST_KEPT, Policy
from pipeline.schooltime import shown_in_school_time
from pipeline.shown import shown_text

DECISION_STYLE = {
    "allowed": "green",
    "review": "yellow",
    "breach": "bold red",
    "rejected": "magenta",
}


def plain(value: object, style: str = "") -> Text:
    """``value`` as a rich renderable that is never read as markup (``[/x]`` is printed,
    not parsed), with its control characters escaped: for anything an event, a user or
    a form supplied."""
    return Text(shown_text(value), style=style)


#: The width a column of :func:`school_time` takes: ``Wed 15 Oct 2025,`` above ``15:49 BST``.
WHEN_WIDTH = 16


def school_time(instant: str | None) -> str:
    """An instant as the ledger keeps it (``2025-10-15T14:49:00.000000Z``) shown as a
    school reads it, ``Wed 15 Oct 2025, 15:49 BST``: short words, which a narrow column
    wraps between; empty for none, and as given (escaped) if it is not an instant."""
    if not instant:
        return ""
    try:
        return shown_in_school_time(datetime.fromisoformat(instant))
    except ValueError:
        return shown_text(instant)


def short_type(value: object) -> str:
    """``transferred`` style short name of an event type, for narrow columns."""
    if isinstance(value, str) and value.startswith("uk.school."):
        return value.removeprefix("uk.school.").removesuffix(".v1")
    return shown_text(value)


def result_row(result: Result) -> Text:
    """One decision as a line, with a reason line under it for each rule broken."""
    decision = result["decision"]
    event_id = shown_text(result["event_id"])
    if len(event_id) > 36:
        event_id = event_id[:35] + "…"
    text = Text()
    text.append(f"{result['line']:>7}  ")
    text.append(f"{decision:<9}", style=DECISION_STYLE.get(decision, ""))
    text.append(f" {event_id:<36}  {short_type(result['type']):<22}")
    if result.get("duplicate"):
        text.append(" (duplicate)", style="dim")
    if "reevaluated_by" in result:
        text.append(f" (re-evaluated after {shown_text(result['reevaluated_by'])})", style="cyan")
    for rule, reason in zip(result["rules"], result["reasons"], strict=True):
        text.append(f"\n{'':>18}{rule}: ", style="bold")
        text.append(shown_text(reason))
    return text


def summary_table(summary: Summary) -> Table:
    """Final decisions per line, counted."""
    counts = summary.counts()
    table = Table(title="decisions", show_header=True, header_style="bold")
    table.add_column("decision")
    table.add_column("lines", justify="right")
    for decision in ("allowed", "review", "breach", "rejected"):
        table.add_row(Text(decision, style=DECISION_STYLE[decision]), str(counts.get(decision, 0)))
    table.add_row("total", str(sum(counts.values())), style="bold")
    if summary.duplicates or summary.reevaluations:
        table.caption = (
            f"{summary.duplicates} redelivered, "
            f"{summary.reevaluations} re-evaluated after late facts"
        )
    return table


_COUNTED_FROM = {
    "record": "the date of the record",
    "dob": "date of birth",
    "left": "the date the pupil left",
    LAST_KEPT: "the last day any school must keep any of the pupil's records",
}


def print_policy(console: Console, policy: Policy) -> None:
    """The whole pack, as tables a DPO can read."""
    spec = policy.spec
    console.print(Text(f"policy pack {policy.name}", style="bold"))
    console.print(f"version {policy.version}")
    if spec.description:
        console.print(spec.description)
    for table in policy_tables(policy):
        console.print(table)
    closures = ", ".join(str(d) for d in policy.closure_dates) or "none"
    console.print(
        f"transfers: within {policy.transfer_deadline} school days of leaving "
        f"(Monday to Friday, less closure dates: {closures})"
    )
    console.print(
        "never for special categories: " + (", ".join(sorted(policy.plain_channels)) or "-")
    )
    console.print(
        f"breach severity: high when a special category is shared or "
        f"{policy.high_pupil_count} or more pupils are in one event"
    )


def policy_tables(policy: Policy) -> list[Table]:
    """The pack's categories, permitted recipients, retention and legal gateways, each a
    table that fits 80 columns with no word broken: what a recipient may receive is one
    cell of labelled lists, which wrap between their items, not six narrow columns."""
    spec = policy.spec
    cats = Table(title="data categories", header_style="bold")
    cats.add_column("category")
    cats.add_column("covers")
    cats.add_column("special (Art 9)")
    for name, cat in spec.categories.items():
        cats.add_row(name, cat.covers, "yes" if cat.special else "")

    recips = Table(title="permitted recipients", header_style="bold", show_lines=True)
    # As wide as the longest recipient id, whose name wraps under it: the rest is the lists'.
    recips.add_column("recipient, for", max_width=max(20, *(len(r) for r in spec.recipients)))
    recips.add_column("may receive")
    for rid, recipient in spec.recipients.items():
        for kind, perm in recipient.permissions.items():
            recips.add_row(
                Group(Text(rid, style="bold"), Text(recipient.name, style="dim"), f"for {kind}"),
                Group(
                    *(
                        Text.assemble((f"{label}: ", "bold"), ", ".join(values) or "-")
                        for label, values in (
                            ("categories", perm.categories),
                            ("lawful bases", perm.lawful_bases),
                            ("Art 9", perm.special_conditions),
                            ("channels", perm.channels),
                        )
                    )
                ),
            )

    keep = Table(title="retention", header_style="bold")
    for column in ("category", "kept for", "counted from", "source"):
        keep.add_column(column)
    rows = [*spec.retention.categories.items(), ("every other", spec.retention.default)]
    for name, ret in rows:
        period = policy.retention_for(name)
        keep.add_row(name, period.describe(), _COUNTED_FROM[ret.counted_from], ret.source)
    kept = spec.ledger_kept
    keep.add_row(
        "the ledger's own (who the pupil is)",
        policy.ledger_retention.describe(),
        _COUNTED_FROM[LAST_KEPT],
        kept.source + ("" if spec.ledger_retention else " (the default)"),
    )

    gateways = Table(title="legal gateways", header_style="bold")
    gateways.add_column("recipient")
    gateways.add_column("event type")
    gateways.add_column("gateway")
    for rid, recipient in spec.recipients.items():
        for kind, perm in recipient.permissions.items():
            gateways.add_row(rid, kind, perm.gateway)
    return [cats, recips, keep, gateways]


def _listed(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(shown_text(v) for v in value) or "-"
    if value is None:
        return "-"
    return shown_text(value)


def print_pack_differences(
    console: Console, old: Policy, new: Policy, differences: Sequence[Difference]
) -> None:
    """Two packs' rules side by side, a row for each place they differ."""
    console.print(
        Text.assemble(
            ("old ", "bold"),
            plain(f"{old.name} {old.version[:12]}"),
            ("   new ", "bold"),
            plain(f"{new.name} {new.version[:12]}"),
        )
    )
    if not differences:
        console.print("the two packs' rules are the same")
        return
    table = Table(header_style="bold", show_lines=True)
    for column in ("section", "item", "field", "change", "old", "new"):
        table.add_column(column)
    style = {"added": "green", "removed": "red", "changed": "yellow"}
    for d in differences:
        table.add_row(
            d.section,
            plain(d.item),
            d.field,
            Text(d.change, style=style[d.change]),
            plain(_listed(d.old)),
            plain(_listed(d.new)),
        )
    console.print(table)
    console.print(f"{len(differences)} differences")


def print_what_if(console: Console, report: dict[str, Any]) -> None:
    """What a candidate pack would have decided differently: the counts, then each
    event changed, its reasons under it."""
    totals = report["totals"]
    candidate = report["candidate"]
    console.print(
        Text.assemble(
            ("what if ", "bold"),
            plain(f"{candidate['name']} {candidate['version'][:12]}"),
            (" had decided ", "bold"),
            plain(report["period"]["phrase"] or "every event recorded"),
        )
    )
    console.print(
        f"{totals['replayed']} events replayed: {totals['changed']} would change, "
        f"{totals['unchanged']} would not; {totals['rejected']} rejected before any rule "
        f"(no pack decides them); {totals['not_replayed']} could not be replayed"
        + "".join(f"\n  {n}: {why}" for why, n in totals["not_replayed_why"].items())
    )
    if totals["by_rule"]:
        rules = Table(title="by rule", header_style="bold")
        for column in ("rule", "gained", "lost"):
            rules.add_column(column, justify="left" if column == "rule" else "right")
        for row in totals["by_rule"]:
            rules.add_row(row["rule"], str(row["gained"]), str(row["lost"]))
        console.print(rules)
    if totals["by_recipient"]:
        recipients = Table(title="by recipient", header_style="bold")
        recipients.add_column("recipient")
        recipients.add_column("events changed", justify="right")
        for row in totals["by_recipient"]:
            recipients.add_row(plain(row["recipient"]), str(row["changed"]))
        console.print(recipients)
    for change in report["changes"]:
        before, after = change["from"]["decision"], change["to"]["decision"]
        text = Text()
        text.append(f"{change['seq']:>8}  ")
        text.append(f"{before:<8}", style=DECISION_STYLE.get(before, ""))
        text.append(" → ")
        text.append(f"{after:<8}", style=DECISION_STYLE.get(after, ""))
        text.append(f" {short_type(change['event_type']):<22} ")
        text.append(shown_text(change["recipient"]))
        text.append(f"  {school_time(change['occurred_at'])}", style="dim")
        for rule in change["gained"]:
            text.append(f"\n{'':>10}+ {rule}", style="bold")
        for rule in change["lost"]:
            text.append(f"\n{'':>10}- {rule}", style="bold")
        for reason in change["to"]["reasons"]:
            text.append(f"\n{'':>12}")
            text.append(shown_text(reason))
        console.print(text)
