"""``make demo``: a simulated school year through the decision engine, end to end.

Writes the year's events to a JSON Lines file, checks them with the england-schools pack
exactly as ``sharing-audit check`` does, and prints what a DPO would look at first.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from pipeline.checking import Result, check_lines, in_memory, numbered_lines
from pipeline.engine import Engine
from pipeline.packs import load_pack
from pipeline.presenting import result_row, summary_table
from pipeline.simulate import simulate


def main(pupils: int = 1000, violation_rate: float = 0.05, seed: int = 2026) -> None:
    console = Console()
    policy = load_pack()
    lines = simulate(pupils, violation_rate, seed)
    folder = Path(tempfile.mkdtemp(prefix="sharing-audit-demo-"))
    events = folder / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(line.event) + b"\n" for line in lines))
    console.print(f"simulated a school year: {len(lines)} events for {pupils} pupils -> {events}")
    console.print(f"policy pack {policy.name}, version {policy.version[:16]}…")

    results: list[Result] = []
    with events.open("rb") as stream:
        summary = check_lines(numbered_lines(stream), in_memory(Engine(policy)), results.append)

    final = {r["line"]: r for r in results}
    truth = {n: line.expected for n, line in enumerate(lines, 1)}
    agree = sum(
        1
        for n, r in final.items()
        if (r["decision"], tuple(r["rules"])) == (truth[n].decision, truth[n].rules)
    )
    console.print(summary_table(summary))
    rules = Counter(rule for r in final.values() for rule in r["rules"])
    table = Table(title="rules broken", header_style="bold")
    table.add_column("rule")
    table.add_column("events", justify="right")
    for rule, count in rules.most_common():
        table.add_row(rule, str(count))
    console.print(table)
    console.print("[bold]first breaches[/bold]")
    for r in [r for r in final.values() if r["decision"] == "breach"][:5]:
        console.print(result_row(r))
    console.print(
        f"decisions matching the simulator's true decisions: {agree} of {len(final)} lines"
    )
    console.print(f"check the file yourself: sharing-audit check {events}")


if __name__ == "__main__":
    main()
