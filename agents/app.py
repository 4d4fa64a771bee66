"""The Faust app: one agent per input topic, the dead-letter topic and the alert relay.

Every agent does the same thing with its topic: take a batch of records without acking,
decide and record them in one ledger transaction (``agents.sink``), send the ones that
are not contract events to ``sharing.deadletter``, and only then ack them, so an offset is
committed only after the ledger has the records below it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import EventT, StreamT
from structlog.contextvars import bound_contextvars

from agents.pacing import Pacer
from agents.relay import AlertRelay
from agents.sink import GROUP_LIMIT, IN_FLIGHT_GROUPS, LedgerSink
from agents.writer import Handled
from pipeline.backoff import backoff_delays
from pipeline.engine import Position
from pipeline.kafka import (
    ALERTS_TOPIC,
    DEADLETTER_TOPIC,
    FACTS_TOPIC,
    INPUT_TOPICS,
    KafkaConfig,
    faust_settings,
)
from pipeline.ledger.ingest import Record
from pipeline.logging import get_logger
from schemas.decisions import RuleId, Verdict

log = get_logger(__name__)

APP_ID = "sharing-audit"
#: Seconds between looks for incidents to notify.
NOTIFY_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class Batching:
    """How many records an agent takes at once and how long it waits to fill a batch; how
    long at most a sharing agent waits for the facts agent to catch up, and how many of its
    batches (and bytes of records) it holds meanwhile (``agents.pacing`` says why); how
    often the relay looks for alerts, and how long an alert is held
    (``pipeline.ledger.outbox`` says why)."""

    size: int = 500
    within: float = 0.2
    patience: float = 10.0
    held: int = 64
    held_bytes: int = 64 * 2**20
    relay_interval: float = 0.5
    alert_hold: float = 60.0

    @property
    def in_flight(self) -> int:
        """Batches an agent may have taken and not yet seen recorded: enough for one agent
        alone to fill the writer's groups (the one being written, the one waiting, the one
        gathering), and at least two, so that a batch gathers while one is written. While
        a backlog drains, the facts agent often runs alone; with fewer in flight it fed
        the writer groups of 1,000 to 2,000 records, each written at up to a quarter more
        cost per record than a full group."""
        return max(2, math.ceil((IN_FLIGHT_GROUPS + 1) * GROUP_LIMIT / self.size))


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


def deadletters(outcomes: Sequence[Handled], records: Sequence[Record]) -> list[tuple[Record, str]]:
    """The records that are not contract events, each with why: they go to the dead
    letters as well as to the ledger (redeliveries included, so none is missed)."""
    raw_at = {position: raw for raw, position in records}
    out = []
    for outcome in outcomes:
        if outcome.kind == "reevaluation" or outcome.decision.rules != (RuleId.EVENT_INVALID,):
            continue
        raw = raw_at.get(outcome.position)
        if raw is not None:
            out.append(((raw, outcome.position), outcome.decision.reasons[0]))
    return out


def log_decisions(handled: Sequence[Handled]) -> None:
    """One log event per decision a person may need to find (not ``allowed``), with the
    event id and Kafka position bound; never the event's content."""
    for h in handled:
        if h.decision.decision is Verdict.ALLOWED or h.kind == "duplicate":
            continue
        with bound_contextvars(
            event_id=h.event_id if isinstance(h.event_id, str) else None,
            topic=h.position.topic,
            partition=h.position.partition,
            offset=h.position.offset,
        ):
            log.info(
                "decision_recorded",
                kind=h.kind,
                decision=h.decision.decision.value,
                rules=[r.value for r in h.decision.rules],
            )


def create_app(
    config: KafkaConfig,
    sink: LedgerSink,
    batching: Batching | None = None,
    notifier: Callable[[], int] | None = None,
) -> Any:
    """The worker's Faust app, recording into ``sink``; ``notifier``, when given, sends
    notices of new high-severity incidents (it blocks, so it runs on a thread)."""
    batching = batching or Batching()
    app = faust.App(
        APP_ID,
        **faust_settings(config),
        **faust_credentials(config),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
    )
    deadletter = app.topic(
        DEADLETTER_TOPIC,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    alerts = app.topic(
        ALERTS_TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def send_deadletters(items: list[tuple[Record, str]], keys: dict[Position, Any]) -> None:
        futures = []
        for (raw, position), reason in items:
            with bound_contextvars(
                topic=position.topic, partition=position.partition, offset=position.offset
            ):
                log.warning("record_deadlettered", reason=reason)
            headers = [
                ("reason", reason.encode()),
                ("source.topic", str(position.topic).encode()),
                ("source.partition", str(position.partition).encode()),
                ("source.offset", str(position.offset).encode()),
            ]
            futures.append(
                await deadletter.send(key=keys.get(position), value=raw, headers=headers)
            )
        await asyncio.gather(*futures)

    async def handle(stream: StreamT[bytes], batch: Sequence[EventT[bytes]]) -> None:
        """Record one batch, dead-letter what is not an event, then (only then) ack."""
        records: list[Record] = []
        keys: dict[Position, Any] = {}
        for event in batch:
            message = event.message
            position = Position(message.topic, message.partition, message.offset)
            records.append((message.value or b"", position))
            keys[position] = message.key
        handled = await sink.write(records)
        log_decisions(handled)
        dead = deadletters(handled, records)
        if dead:
            await _until_sent(send_deadletters, dead, keys)
        for event in batch:
            await stream.ack(event)

    pacer = Pacer(batching.patience)

    def facts_ends() -> dict[int, int | None]:
        """The end offset of each facts partition this worker has (None until fetched)."""
        try:
            consumer = app.consumer
            return {
                tp.partition: consumer.highwater(tp)
                for tp in consumer.assignment()
                if tp.topic == FACTS_TOPIC
            }
        except Exception:  # not consuming yet, or stopping: then nothing is waited for
            return {}

    def start_handling(
        stream: StreamT[bytes], events: Sequence[EventT[bytes]], in_flight: asyncio.Semaphore
    ) -> None:
        task = asyncio.ensure_future(handle(stream, events))
        task.add_done_callback(lambda _: in_flight.release())

    async def record_facts(stream: StreamT[bytes]) -> None:
        # Several batches may be in flight, so that the next one is gathered while the
        # ledger writes this one; each is acked when its own transaction has committed.
        in_flight = asyncio.Semaphore(batching.in_flight)
        # noack_take yields the events (not just values) and leaves acking to us.
        take = stream.noack_take  # type: ignore[attr-defined]
        async for events in take(batching.size, within=batching.within):
            await in_flight.acquire()
            pacer.facts_taken(
                (e.message.partition, e.message.offset, e.message.timestamp or 0.0) for e in events
            )
            start_handling(stream, events, in_flight)

    async def record_sharing(stream: StreamT[bytes]) -> None:
        # As record_facts, but each batch may be held for the facts agent (agents.pacing),
        # and the agent goes on taking meanwhile, up to batching.held batches or
        # batching.held_bytes of records, whichever comes first.
        in_flight = asyncio.Semaphore(batching.in_flight)
        held: asyncio.Queue[tuple[Sequence[EventT[bytes]], int]] = asyncio.Queue(batching.held)
        held_bytes = 0  # of the batches taken and not yet handed on

        def enough() -> bool:
            return held.full() or held_bytes >= batching.held_bytes

        async def hand_on() -> None:
            nonlocal held_bytes
            while True:
                events, size = await held.get()
                latest = max(e.message.timestamp or 0.0 for e in events)
                try:
                    await pacer.wait_turn(latest, facts_ends, enough=enough)
                except Exception as exc:  # holding only saves work: never stall on it
                    log.warning("pacing_failed", error=type(exc).__name__)
                held_bytes -= size
                await in_flight.acquire()
                start_handling(stream, events, in_flight)

        handing = asyncio.ensure_future(hand_on())
        take = stream.noack_take  # type: ignore[attr-defined]
        try:
            async for events in take(batching.size, within=batching.within):
                size = sum(len(e.message.value or b"") for e in events)
                held_bytes += size
                await held.put((events, size))
                if enough():
                    pacer.wake()
        finally:
            handing.cancel()

    def agent_of(record: Callable[[StreamT[bytes]], Awaitable[None]]) -> Any:
        async def agent(stream: StreamT[bytes]) -> None:
            await record(stream)

        return agent

    for name in INPUT_TOPICS:
        topic = app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )
        recorder = record_facts if name == FACTS_TOPIC else record_sharing
        app.agent(topic, name=f"record-{name}")(agent_of(recorder))

    relay = AlertRelay(sink, alerts, batching.alert_hold)

    async def relay_round() -> None:
        await relay.round()

    app.timer(batching.relay_interval)(relay_round)

    if notifier is not None:
        notify = notifier

        async def notify_incidents() -> None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, notify)
            except Exception as exc:  # the next round tries again
                log.warning("incident_notices_failed", error=type(exc).__name__)

        app.timer(NOTIFY_INTERVAL)(notify_incidents)

    return app


async def _until_sent(send: Any, *args: Any) -> None:
    """Retry a send to the broker until it is acknowledged: the records stay unacked."""
    delays = backoff_delays(first=0.5, cap=30.0)
    while True:
        try:
            await send(*args)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = next(delays)
            log.warning("send_failed", error=type(exc).__name__, retry_in=round(delay, 2))
            await asyncio.sleep(delay)
