"""The Faust app: one agent per input topic, the dead-letter topic and the alert relay.

Faust only: what an agent does with its batches is ``agents.recorder``'s, the relay's is
``agents.relay``'s; here they are wired to topics and timers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import StreamT

from agents.recorder import Batching, Recorder
from agents.relay import AlertRelay
from agents.sink import LedgerSink
from pipeline.logging import get_logger
from pipeline.monitoring import WorkerFlow
from pipeline.transport.kafka import (
    ALERTS_TOPIC,
    DEADLETTER_TOPIC,
    FACTS_TOPIC,
    FETCH_WAIT_MS,
    INPUT_TOPICS,
    RECEIPTS_TOPIC,
    WORKER_GROUP,
    KafkaConfig,
    faust_settings,
)

log = get_logger(__name__)

#: Seconds between looks for incidents to notify.
NOTIFY_INTERVAL = 5.0
#: How often the worker looks for records fallen due (each school is alerted once a week).
RETENTION_INTERVAL = 3600.0


def faust_credentials(config: KafkaConfig) -> dict[str, Any]:
    """Faust's form of the TLS/SASL settings in ``config`` (none for plaintext)."""
    if config.security_protocol == "PLAINTEXT":
        return {}
    if config.sasl_mechanism:
        ssl_context = config.ssl_context() if config.security_protocol == "SASL_SSL" else None
        credentials: Any = faust.SASLCredentials(
            username=config.sasl_username,
            password=config.sasl_password,
            mechanism=config.sasl_mechanism,
            ssl_context=ssl_context,
        )
    else:
        credentials = faust.SSLCredentials(config.ssl_context())
    return {"broker_credentials": credentials}


def create_app(
    config: KafkaConfig,
    sink: LedgerSink,
    batching: Batching | None = None,
    notifier: Callable[[], int] | None = None,
    datadir: Path | None = None,
    retention: Callable[[], int] | None = None,
    flow: WorkerFlow | None = None,
    ledger_retention: Callable[[], Any] | None = None,
) -> Any:
    """The worker's Faust app, recording into ``sink``; ``notifier``, when given, sends
    notices of new high-severity incidents (it blocks, so it runs on a thread), and
    ``retention``, when given, alerts each school of records fallen due once a week (on a
    thread too; the count of schools alerted); ``ledger_retention``, when given, applies
    the ledger's own retention once a day (it looks hourly; on a thread).

    ``datadir`` is the folder Faust makes at start for tables kept on disk, which this app
    has none of (its store is in memory); unset, Faust makes ``sharing-audit-data/`` in the
    working folder, where it is left behind, empty, for ``git add`` to find."""
    batching = batching or Batching()
    where: dict[str, Any] = {} if datadir is None else {"datadir": datadir}
    app = faust.App(
        WORKER_GROUP,
        **where,
        **faust_settings(config),
        **faust_credentials(config),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
    )
    app.transport = _PromptTransport(app.conf.broker_consumer, app)
    deadletter, alerts = _raw_topic(app, DEADLETTER_TOPIC), _raw_topic(app, ALERTS_TOPIC)

    async def send_deadletter(key: bytes | None, value: bytes, headers: Any) -> Any:
        return await deadletter.send(key=key, value=value, headers=headers)

    async def send_receipt(key: bytes, value: bytes) -> Any:
        # Straight to the producer: a topic's send costs a record several times more (its
        # message objects, callbacks and sensors), and a receipt goes for every record.
        return await app.producer.send(RECEIPTS_TOPIC, key, value, None, None, None)

    recorder = Recorder(
        sink,
        batching,
        send_deadletter,
        lambda: _facts_ends(app),
        send_receipt=send_receipt,
        flow=flow,
        on_failure=app.crash,  # the worker stops and exits 1: see Recorder
    )
    for name in INPUT_TOPICS:
        record = recorder.record_facts if name == FACTS_TOPIC else recorder.record_sharing
        app.agent(_raw_topic(app, name), name=f"record-{name}")(_agent(record, batching))

    relay = AlertRelay(sink, alerts, batching.alert_hold)

    async def relay_round() -> None:
        await relay.round()

    app.timer(batching.relay_interval)(relay_round)
    if notifier is not None:
        notifying = _on_thread(notifier, "incident_notices_failed")
        app.timer(NOTIFY_INTERVAL, name="notify_incidents")(notifying)
    if retention is not None:
        app.timer(RETENTION_INTERVAL)(_retention_round(retention))
    if ledger_retention is not None:
        # What it erased and passed over is logged as it is applied.
        forgetting = _on_thread(ledger_retention, "ledger_retention_not_applied")
        app.timer(RETENTION_INTERVAL, name="ledger_retention")(forgetting)
    return app


class _PromptConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer, but asking the broker to answer a fetch within
    ``FETCH_WAIT_MS`` rather than Faust's fixed 1,500 ms (which it offers no
    setting for): the embedded broker holds every fetch that long."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_WAIT_MS  # read when it starts
        return consumer


class _PromptConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _PromptConsumerThread:
        return _PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _PromptTransport(faust_aiokafka.Transport):
    Consumer = _PromptConsumer


def _raw_topic(app: Any, name: str) -> Any:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def _agent(record: Callable[..., Any], batching: Batching) -> Any:
    """A Faust agent handing its stream's batches, unacked, to ``record``."""

    async def agent(stream: StreamT[bytes]) -> None:
        # noack_take yields the events (not just values) and leaves acking to the recorder.
        take = stream.noack_take  # type: ignore[attr-defined]
        await record(take(batching.size, within=batching.within), stream.ack)

    return agent


def _facts_ends(app: Any) -> dict[int, int | None]:
    """The end offset of each facts partition this worker has (None until fetched); none
    while the facts agent cannot take a record: while the worker stops, and in a rebalance,
    where Faust stops fetching and then waits for every record taken to be acked before it
    lets the partitions go (a sharing batch held for the facts agent then held both)."""
    try:
        consumer = app.consumer
        if app.should_stop or app.rebalancing or not consumer.flow_active:
            return {}
        return {
            tp.partition: consumer.highwater(tp)
            for tp in consumer.assignment()
            if tp.topic == FACTS_TOPIC
        }
    except Exception:  # not consuming yet, or stopping: then nothing is waited for
        return {}


def _retention_round(check: Callable[[], int]) -> Callable[[], Any]:
    async def retention_due() -> None:
        try:
            raised = await asyncio.get_running_loop().run_in_executor(None, check)
        except Exception as exc:  # the next round tries again
            log.warning("retention_due_not_checked", error=type(exc).__name__)
            return
        if raised:
            log.info("retention_due_alerted", schools=raised)

    return retention_due


def _on_thread(run: Callable[[], Any], failed: str) -> Callable[[], Any]:
    """A timer's round running ``run`` (which blocks) on a thread; a failure is logged as
    ``failed``, and the next round tries again."""

    async def on_thread() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, run)
        except Exception as exc:  # the next round tries again
            log.warning(failed, error=type(exc).__name__)

    return on_thread
