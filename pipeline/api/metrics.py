"""The desk's Prometheus endpoint: how long each route takes, and the ledger's figures
(``pipeline.monitoring``), for an admin of every school.

The figures count every school's records, so, like the queue's count of records awaiting
a receipt, they are for those who serve every school (DESIGN.md, invariant 8): Prometheus
scrapes with an admin's token (``authorization: {credentials_file: ...}`` in its scrape
configuration; ``deploy/prometheus/README.md``).

A route's time is taken to its response's first byte: a streamed export goes on after.
Routes are labelled by their template (``/desk/incidents/{incident_id}``), never by the
path asked, so no identifier reaches the metrics and their number stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

from pipeline.api.deps import Admin
from pipeline.ledger.storage.store import Ledger
from pipeline.logging import get_logger
from pipeline.monitoring import PREFIX, SECONDS_BUCKETS, LedgerFigures, Watched, watched_from
from pipeline.settings import Settings

log = get_logger(__name__)
router = APIRouter(tags=["operations"])


def install(api: FastAPI, ledger: Ledger, config: Settings) -> None:
    """Give ``api`` its own registry (each app has one: tests build many), the ledger's
    figures, and the timing of every request."""
    registry = CollectorRegistry()
    try:
        watched = watched_from(config)
    except ValueError as exc:  # the worker refuses to start on it; the desk says so
        log.warning("metrics_witnesses_unknown", error=str(exc))
        watched = Watched((), config.witness_quorum, config.checkpoint_seconds, config.merge_delay)
    kafka = config.kafka(config.broker) if config.broker else None
    registry.register(LedgerFigures(ledger, watched, kafka))
    seconds = Histogram(
        f"{PREFIX}_http_request_seconds",
        "Seconds to each response's first byte, by route template, method and status.",
        ["route", "method", "status"],
        buckets=SECONDS_BUCKETS,
        registry=registry,
    )
    api.state.metrics = registry

    @api.middleware("http")
    async def timed(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", None) or "unmatched"
        seconds.labels(route, request.method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    api.include_router(router)


@router.get("/metrics", response_class=Response, include_in_schema=True)
def metrics(request: Request, user: Admin) -> Response:
    """The desk's and the ledger's figures in Prometheus's text format."""
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
