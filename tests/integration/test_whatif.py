"""``sharing-audit policy what-if`` on a simulated year, on SQLite and PostgreSQL: the
events a candidate pack would decide differently are exactly those the simulator's truth
says (worked out here from the event file, not from the engine).

The year is simulated with a violation rate of 0.3, so that its three census returns a
school include the rarer injections (an unknown category among them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.engine import Position
from pipeline.ledger.privacy.erasure import erase_many
from pipeline.ledger.reading.queries import Filters, entries, entry_at
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import ENTRY, Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.packs import load_pack, pack_text
from pipeline.policy.pack import Policy
from pipeline.simulate import Line, simulate
from schemas.decisions import RuleId
from schemas.events import REFERRAL, SHARING_TYPES
from tests.factory import line as record
from tests.factory import referral
from tests.integration.year import KEY, Year, pseudonym, write_lines

pytestmark = pytest.mark.integration
runner = CliRunner()

PUPILS, RATE, SEED = 500, 0.3, 9
AUGUST = "2026-08-10T10:00:00+01:00"  # after the simulated year


@pytest.fixture
def year(db_url: str, policy: Policy) -> Year:
    ledger = Ledger.open(db_url)
    schema.upgrade(ledger.engine)
    return Year(ledger, write_lines(ledger, policy, simulate(PUPILS, RATE, SEED)))


def first_deliveries(year: Year) -> list[Line]:
    """Each event once, as first delivered (a redelivery is the same event again)."""
    seen: set[str] = set()
    out = []
    for line in year.lines:
        if line.event["id"] not in seen:
            seen.add(line.event["id"])
            out.append(line)
    return out


def decided_sharing(year: Year, where: Callable[[Line], bool] = lambda _: True) -> set[str]:
    """The ids of the sharing events a pack decides (not rejected before any rule) that
    ``where`` picks, from the simulator's truth."""
    return {
        line.event["id"]
        for line in first_deliveries(year)
        if line.event.get("type") in SHARING_TYPES
        and line.expected.decision != "rejected"
        and where(line)
    }


def candidate(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> str:
    """The shipped pack, changed by ``change``, written as a YAML file; its path."""
    document = yaml.safe_load(pack_text()[0])
    change(document)
    path = tmp_path / "candidate.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    return str(path)


def what_if(year: Year, pack: str, *more: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The changes (one object each) and the summary ``policy what-if`` prints as JSON
    Lines."""
    url = year.ledger.engine.url.render_as_string(hide_password=False)
    done = runner.invoke(app, ["policy", "what-if", pack, "--db", url, "-f", "jsonl", *more])
    assert done.exit_code == 0, done.stdout + done.stderr
    lines = [orjson.loads(text) for text in done.stdout.splitlines()]
    assert "summary" in lines[-1]
    return lines[:-1], lines[-1]["summary"]


def test_the_pack_in_force_changes_no_event_of_the_year(year: Year, tmp_path: Path) -> None:
    changes, summary = what_if(year, candidate(tmp_path, lambda _: None))
    assert changes == []
    assert summary["totals"]["changed"] == 0
    assert summary["totals"]["replayed"] == len(decided_sharing(year)) > 300
    assert summary["totals"]["not_replayed"] == 0


def test_a_recipients_permission_removed_changes_exactly_the_events_sent_to_it(
    year: Year, tmp_path: Path
) -> None:
    def no_la_referrals(pack: dict[str, Any]) -> None:
        del pack["recipients"]["la:{LA}"]["permissions"]["referral"]

    changes, summary = what_if(year, candidate(tmp_path, no_la_referrals))
    expected = decided_sharing(
        year,
        lambda line: line.event["type"] == REFERRAL and line.event["data"]["recipient"] == "la:850",
    )
    assert {c["event_id"] for c in changes} == expected
    assert len(expected) > 100
    assert all(c["to"]["decision"] == "breach" for c in changes)
    assert all("recipient.not_permitted" in c["gained"] for c in changes)
    assert summary["totals"]["by_recipient"] == [{"recipient": "la:850", "changed": len(expected)}]


def test_a_category_added_changes_exactly_the_events_it_makes_allowed(
    year: Year, tmp_path: Path
) -> None:
    def with_photographs(pack: dict[str, Any]) -> None:
        pack["categories"]["photographs"] = {"covers": "photographs of the pupil"}
        for recipient in ("dfe", "la:{LA}"):
            pack["recipients"][recipient]["permissions"]["census"]["categories"].append(
                "photographs"
            )

    changes, summary = what_if(year, candidate(tmp_path, with_photographs))
    expected = decided_sharing(year, lambda line: line.expected.rules == ("category.unknown",))
    assert expected
    assert {c["event_id"] for c in changes} == expected
    assert all(
        (c["from"]["decision"], c["to"]["decision"]) == ("review", "allowed") for c in changes
    )
    assert summary["totals"]["by_rule"] == [
        {"rule": "category.unknown", "gained": 0, "lost": len(expected)}
    ]


def test_the_replay_appends_nothing_but_the_record_of_its_read(year: Year, tmp_path: Path) -> None:
    with year.ledger.engine.connect() as connection:
        before = Ledger.head(connection)[0]
    _, summary = what_if(year, candidate(tmp_path, lambda _: None), "--since", "2026-01-01")
    with year.ledger.engine.connect() as connection:
        after = Ledger.head(connection)[0]
        kind, details = connection.execute(
            select(ENTRY.c.kind, ENTRY.c.details).where(ENTRY.c.seq == after)
        ).one()
    assert after == before + 1 == summary["read_seq"]
    assert kind == "read"
    assert orjson.loads(details)["action"] == "what_if"


def test_the_events_of_an_erased_pupil_are_counted_as_not_replayed(
    year: Year, tmp_path: Path
) -> None:
    upn = next(
        line.event["data"]["pupils"][0]["upn"]
        for line in first_deliveries(year)
        if line.event.get("type") == REFERRAL and line.expected.decision != "rejected"
    )
    erase_many(year.ledger, [year.pseudonym(upn)], by="test", reason="test", rule="request")
    naming = decided_sharing(
        year, lambda line: upn in [p["upn"] for p in line.event["data"]["pupils"]]
    )
    _, summary = what_if(year, candidate(tmp_path, lambda _: None))
    assert summary["totals"]["not_replayed"] == len(naming) > 0
    assert summary["totals"]["replayed"] == len(decided_sharing(year)) - len(naming)
    assert summary["totals"]["changed"] == 0


def test_a_candidate_with_problems_is_refused_in_one_line(year: Year, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("pack: x\ncategories: {}\n", "utf-8")
    url = year.ledger.engine.url.render_as_string(hide_password=False)
    done = runner.invoke(app, ["policy", "what-if", str(path), "--db", url])
    assert done.exit_code != 0
    assert done.stderr.startswith("sharing-audit: candidate pack")
    assert len(done.stderr.strip().splitlines()) == 1


def no_la_referrals(pack: dict[str, Any]) -> None:
    del pack["recipients"]["la:{LA}"]["permissions"]["referral"]


def test_adopting_a_pack_is_an_entry_and_the_writer_decides_by_it_from_its_next_batch(
    year: Year, tmp_path: Path, policy: Policy
) -> None:
    writer = LedgerWriter(year.ledger, policy, pseudonym)  # started before the adoption
    before = writer.write(
        [(record(referral(recipient="la:850", time=AUGUST)), Position.line("t", 1))]
    )
    assert before[0].decision.decision.value == "allowed"
    path = candidate(tmp_path, no_la_referrals)
    url = year.ledger.engine.url.render_as_string(hide_password=False)
    done = runner.invoke(app, ["policy", "adopt", path, "--db", url])
    assert done.exit_code == 0, done.stdout + done.stderr
    with year.ledger.engine.connect() as connection:
        (adoption,) = entries(connection, Filters(kind="pack_adopted"))
    details = adoption.details or {}
    new = load_pack(path)
    assert details["new"]["version"] == new.version != policy.version
    assert details["old"]["version"] == policy.version
    assert details["by"] and details["what_if"]["changed"] > 100
    assert f"entry {adoption.seq}" in done.stdout

    (after,) = writer.write([(record(referral(recipient="la:850")), Position.line("t", 2))])
    assert (after.decision.decision.value, after.decision.rules) == (
        "breach",
        (RuleId.RECIPIENT_NOT_PERMITTED,),
    )
    with year.ledger.engine.connect() as connection:
        recorded = entry_at(connection, after.seq or 0)
    assert recorded is not None and recorded.policy_version == new.version
    env = {"SHARING_AUDIT_PSEUDONYM_KEY": KEY.hex()}
    verified = runner.invoke(app, ["ledger", "verify", "--db", url], env=env)
    assert verified.exit_code == 0, verified.stdout + verified.stderr


def test_what_if_with_the_adopted_pack_changes_nothing_recorded_since(
    year: Year, tmp_path: Path, policy: Policy
) -> None:
    path = candidate(tmp_path, no_la_referrals)
    url = year.ledger.engine.url.render_as_string(hide_password=False)
    assert runner.invoke(app, ["policy", "adopt", path, "--db", url]).exit_code == 0
    writer = LedgerWriter(year.ledger, policy, pseudonym)
    writer.write([(record(referral(recipient="la:850", time=AUGUST)), Position.line("t", 1))])
    changes, summary = what_if(year, path, "--since", "2026-08-01")
    assert changes == [] and summary["totals"]["replayed"] == 1
    assert summary["in_force"] == [{"name": policy.name, "version": load_pack(path).version}]
