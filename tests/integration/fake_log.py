"""A stand-in for the worker's receipts, for senders' tests: a thread that reads the input
topics of a real broker and publishes, for each record, what a test says (by default the
receipt a log that recorded it would sign), on ``sharing.receipts``, keyed as the worker
keys it (the event id, else the record's position)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any

from pipeline.policy.intake import read_event
from pipeline.transparency.delivery import DeliveryReceipt, sign_receipt
from pipeline.transparency.merkle import leaf_hash
from pipeline.transparency.note import Signer
from pipeline.transport.kafka import (
    INPUT_TOPICS,
    RECEIPTS_TOPIC,
    KafkaConfig,
    consumer_settings,
    producer_settings,
)

ORIGIN = "example.org/sharing-audit"
LOG = Signer(ORIGIN, bytes(range(32)))
#: What to publish for one record, given the receipt an honest log would sign for it.
Answer = Callable[[DeliveryReceipt], list[bytes]]


def honest(receipt: DeliveryReceipt) -> list[bytes]:
    return [sign_receipt(receipt, LOG)]


class FakeLog:
    """Reads every input topic from the start; ``seen`` counts the records by event id
    (None for those without a usable one), and a record whose id came before is answered
    with a ``duplicate`` receipt naming the entry that first recorded it."""

    def __init__(
        self, config: KafkaConfig, answer: Answer | None = None, log: Signer = LOG
    ) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        self.log = log
        self.answer = answer or (lambda receipt: [sign_receipt(receipt, log)])
        self.seen: Counter[str | None] = Counter()
        self._first: dict[str, int] = {}
        self._seq = 0
        self._stop = threading.Event()
        self.consumer = KafkaConsumer(**consumer_settings(config), fetch_max_wait_ms=20)
        partitions = [
            TopicPartition(topic, p)
            for topic in INPUT_TOPICS
            for p in self.consumer.partitions_for_topic(topic) or ()
        ]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        for partition in partitions:
            self.consumer.position(partition)
        self.producer = KafkaProducer(**producer_settings(config))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeLog:
        self.thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self.thread.join(30)
        self.consumer.close()
        self.producer.close(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for batch in self.consumer.poll(timeout_ms=200).values():
                for record in batch:
                    self._answer(record)
            self.producer.flush(10)

    def _answer(self, record: Any) -> None:
        event_id = read_event(record.value).key
        self.seen[event_id] += 1
        self._seq += 1
        seq, decision = self._seq, "allowed"
        if event_id is not None and event_id in self._first:
            seq, decision = self._first[event_id], "duplicate"
        elif event_id is not None:
            self._first[event_id] = seq
        receipt = DeliveryReceipt(
            self.log.name,
            event_id,
            record.topic,
            record.partition,
            record.offset,
            seq,
            leaf_hash(record.value),
            decision,
            int(time.time()),
        )
        key = (event_id or receipt.record).encode()
        for value in self.answer(receipt):
            self.producer.send(RECEIPTS_TOPIC, key=key, value=value)
