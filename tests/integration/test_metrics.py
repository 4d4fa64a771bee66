"""Metrics an operator already knows how to watch (issue 33): the worker's and the desk's
Prometheus endpoints, read as Prometheus reads them, and the alert rules and dashboard
in deploy/ checked against what the endpoints really expose, the rules by Prometheus's
own promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from pipeline.ledger.records.entry import EntryKind
from pipeline.policy.pack import Policy
from pipeline.simulate import simulate
from pipeline.transport.broker import free_port
from pipeline.transport.kafka import KafkaConfig, ensure_topics
from pipeline.transport.mis import MisProducer
from pipeline.transport.processes import Pipeline
from pipeline.users import Role, add_user
from tests.integration.breaches import breach_desk, ledger_with_breaches
from tests.integration.streaming import ledger_count, wait_until

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts-test.yml"
DASHBOARD = DEPLOY / "grafana" / "sharing-audit.json"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples carrying ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= set(ls))


def names(found: Samples) -> set[str]:
    return {name for name, _ in found}


# -- the desk ---------------------------------------------------------------------------------


def desk_scrape(sqlite_url: str, policy: Policy) -> tuple[TestClient, dict[str, str]]:
    ledger = ledger_with_breaches(sqlite_url, policy)
    token = add_user(ledger, "Ops (admin)", Role.ADMIN)
    return TestClient(breach_desk(ledger)), {"Authorization": f"Bearer {token}"}


def test_the_desk_serves_its_figures_to_an_admin_of_every_school(
    sqlite_url: str, policy: Policy
) -> None:
    client, auth = desk_scrape(sqlite_url, policy)
    client.get("/entries", headers=auth)
    answer = client.get("/metrics", headers=auth)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = samples(answer.text)
    assert total(found, "sharing_audit_ledger_entries") >= 3  # three events, and reads
    assert total(found, "sharing_audit_alerts", status="pending") == 3  # one a breach
    assert total(found, "sharing_audit_checkpoint_size") == 0
    timed = total(found, "sharing_audit_http_request_seconds_count", route="/entries", status="200")
    assert timed == 1


def test_a_route_is_timed_by_its_template_never_by_the_identifier_asked(
    sqlite_url: str, policy: Policy
) -> None:
    client, auth = desk_scrape(sqlite_url, policy)
    client.get("/entries/1", headers=auth)
    client.get("/entries/2", headers=auth)
    found = samples(client.get("/metrics", headers=auth).text)
    routes = {dict(ls).get("route") for n, ls in found if n.startswith("sharing_audit_http")}
    assert "/entries/{seq}" in routes
    assert not any(route and re.search(r"/\d", route) for route in routes)


@pytest.mark.parametrize(
    ("role", "schools", "status"),
    [(None, (), 401), (Role.DPO, (), 403), (Role.AUDITOR, (), 403), (Role.ADMIN, ("100000",), 403)],
    ids=["no token", "a DPO", "an auditor", "an admin of one school"],
)
def test_the_figures_count_every_school_so_only_an_admin_of_every_school_reads_them(
    sqlite_url: str, policy: Policy, role: Role | None, schools: tuple[str, ...], status: int
) -> None:
    ledger = ledger_with_breaches(sqlite_url, policy)
    headers = {}
    if role is not None:
        token = add_user(ledger, "Someone", role, schools=schools)
        headers = {"Authorization": f"Bearer {token}"}
    assert TestClient(breach_desk(ledger)).get("/metrics", headers=headers).status_code == status


# -- the worker -------------------------------------------------------------------------------


@pytest.mark.slow  # a broker and a worker
def test_the_worker_counts_each_record_it_takes_records_and_receipts(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    events = [orjson.dumps(line.event) for line in simulate(60, violation_rate=0.2, seed=11)]
    port = free_port()
    url = f"sqlite:///{tmp_path}/ledger.db"
    env = {"SHARING_AUDIT_METRICS_PORT": str(port), "SHARING_AUDIT_CHECKPOINT_SECONDS": "1"}
    ensure_topics(kafka)
    with Pipeline(url, kafka, worker_log=tmp_path / "worker.log", env=env):
        with MisProducer(kafka) as producer:
            producer.send_all(events, timeout=60)

        def scraped() -> Samples:
            try:
                return samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
            except httpx.HTTPError:
                return {}

        def settled() -> bool:
            found = scraped()
            return (
                total(found, "sharing_audit_records_recorded_total") == len(events)
                and total(found, "sharing_audit_consumer_lag_records") == 0
                and total(found, "sharing_audit_checkpoint_lag_entries") == 0
            )

        assert wait_until(settled, timeout=90), (tmp_path / "worker.log").read_text()[-3000:]
        found = scraped()
        head = ledger_count(url) + ledger_count(url, EntryKind.REEVALUATION)
    assert total(found, "sharing_audit_records_consumed_total") == len(events)
    assert total(found, "sharing_audit_receipts_sent_total") == len(events)
    assert total(found, "sharing_audit_decisions_total") >= len(events)
    assert total(found, "sharing_audit_decisions_total", kind="decision") == ledger_count(url)
    assert total(found, "sharing_audit_records_in_flight") == 0
    assert total(found, "sharing_audit_write_group_records_sum") >= len(events)
    assert total(found, "sharing_audit_ledger_entries") >= head
    assert total(found, "sharing_audit_broker_up") == 1
    assert total(found, "sharing_audit_unmerged_receipted_entries") == 0
    assert total(found, "sharing_audit_checkpoint_signed_timestamp_seconds") > 0


# -- what deploy/ watches -------------------------------------------------------------------


def expressions() -> Iterable[str]:
    """Every PromQL expression of the dashboard and of the alert rules."""
    board = json.loads(DASHBOARD.read_text())
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    import yaml

    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["expr"]


def test_the_dashboard_and_the_alert_rules_watch_only_metrics_the_endpoints_expose(
    sqlite_url: str, policy: Policy
) -> None:
    """A renamed metric would leave a panel blank and an alert silent, unnoticed."""
    from pipeline.monitoring import WorkerFlow

    client, auth = desk_scrape(sqlite_url, policy)
    client.get("/entries", headers=auth)
    exposed = names(samples(client.get("/metrics", headers=auth).text))
    flow = WorkerFlow()
    flow.consumed.labels("t").inc()
    flow.recorded.labels("t").inc()
    flow.decisions.labels("decision", "allowed").inc()
    from prometheus_client import generate_latest

    exposed |= names(samples(generate_latest(flow.registry).decode()))
    exposed |= {  # exposed once there is a checkpoint, a broker, witnesses (the worker test)
        "sharing_audit_checkpoint_signed_timestamp_seconds",
        "sharing_audit_broker_up",
        "sharing_audit_consumer_lag_records",
        "sharing_audit_awaiting_receipt_oldest_age_seconds",
        "sharing_audit_witness_lag_entries",
        "sharing_audit_witnesses_refusing",
    }
    used = {m for expr in expressions() for m in re.findall(r"\bsharing_audit_\w+", expr)}
    assert used, "the dashboard and rules watch nothing"
    assert used <= exposed, sorted(used - exposed)


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed"
)


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_each_alert_fires_on_the_failure_it_is_for_and_not_before(tmp_path: Path) -> None:
    """Prometheus's own rule tests (deploy/prometheus/alerts-test.yml): series that grow a
    lag, miss the merge delay, stop signing and meet a refusing witness, and the alert
    each must raise, at the time it must."""
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULE_TESTS.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_witness_whose_latest_answer_is_a_refusal_is_counted_until_it_cosigns_again(
    sqlite_url: str, policy: Policy
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from pipeline.ledger.log.checkpoints import record_cosignature
    from pipeline.monitoring import LedgerFigures, Watched

    ledger = ledger_with_breaches(sqlite_url, policy)
    registry = CollectorRegistry()
    registry.register(LedgerFigures(ledger, Watched(("w1.example", "w2.example"))))

    def refusing() -> float:
        return total(
            samples(generate_latest(registry).decode()), "sharing_audit_witnesses_refusing"
        )

    record_cosignature(ledger, 2, "w1.example", "— w1.example sig\n")
    record_cosignature(ledger, 3, "w1.example", None, "HTTP 409: not an extension")
    record_cosignature(ledger, 3, "w2.example", "— w2.example sig\n")
    assert refusing() == 1
    record_cosignature(ledger, 4, "w1.example", "— w1.example sig\n")
    assert refusing() == 0
