"""A ledger holding a simulated school year, and the events it was built from: the
auditors' test data. The event file is the oracle: reports are checked against it."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from pipeline.engine import Position
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.pupils import finder
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.simulate import Line, simulate

KEY = bytes(range(32))
pseudonym = pseudonymiser(KEY)


@dataclass(frozen=True)
class Year:
    ledger: Ledger
    lines: list[Line]

    def pseudonym(self, upn: str) -> str:
        """The pseudonym the ledger records this pupil under."""
        return finder(self.ledger)(upn)

    def upns(self) -> list[str]:
        """Every pupil's UPN, in order of first appearance."""
        found: dict[str, None] = {}
        for line in self.lines:
            data = line.event.get("data", {})
            for upn in [p.get("upn") for p in data.get("pupils", [])] + [data.get("upn")]:
                if upn and line.expected.rules != ("pupil.invalid_upn",):
                    found[upn] = None
        return list(found)


def ledger_of_year(url: str, policy: Policy, pupils: int = 500, seed: int = 1) -> Year:
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    return Year(ledger, write_year(ledger, policy, pupils, seed))


def write_year(ledger: Ledger, policy: Policy, pupils: int, seed: int) -> list[Line]:
    """Record a simulated year of ``pupils`` in ``ledger`` as the writer would; its lines."""
    return write_lines(ledger, policy, simulate(pupils, 0.05, seed))


def write_lines(ledger: Ledger, policy: Policy, lines: list[Line]) -> list[Line]:
    """Record simulated ``lines`` in ``ledger`` as the writer would; the lines."""
    writer = LedgerWriter(ledger, policy, pseudonym)
    raw = [orjson.dumps(line.event) for line in lines]
    for start in range(0, len(raw), 1_000):
        batch = raw[start : start + 1_000]
        writer.write([(r, Position.line("year", start + i + 1)) for i, r in enumerate(batch)])
    return lines
