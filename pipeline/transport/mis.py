"""The Python SDK for MIS vendors: build contract events, validate them, send them.

Events are built with typed helpers that fill in the envelope (a fresh id, the school's
source, the time now unless given) and validate against contract v1 before anything is
sent, so a mistake is reported to the MIS where it is made, naming the field. Sending
routes each event to its topic with the contract's record key and waits, by default,
for the log's signed receipt that it recorded the event (a broker's acknowledgement
alone promises nothing: the embedded broker keeps records in memory)::

    from pipeline.transport.mis import MisClient

    vkey = open("log.vkey").read()  # sharing-audit log vkey prints it
    with MisClient("127.0.0.1:9092", school_urn="100000", log_vkey=vkey) as mis:
        referral = mis.referral(
            upn="H801200001001", recipient="agency:school-nursing",
            categories=["health"], lawful_basis="public_task",
            special_condition="9.2.h", channel="secure_email",
        )
        # NotRecorded if the log signed no receipt in time; keep the signed note it gives
        receipt = mis.send(referral, keep=lambda event, note: kept.append(note))

``wait="acked"`` waits only for the broker, as earlier versions did.

Any Kafka client in any language can do the same by writing the JSON of
``schemas/json/`` to the topics; this module is a convenience, not a requirement.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, Self, overload

import orjson
from pydantic import ValidationError

from pipeline.transparency.delivery import DeliveryReceipt
from pipeline.transparency.note import ED25519, NoteError, Verifier
from pipeline.transport.kafka import KafkaConfig, producer_settings
from pipeline.transport.receipts import (
    RESEND_AFTER,
    Delivery,
    OnReceipt,
    Outgoing,
    ReceiptFeed,
    deliver,
)
from schemas.events import (
    CENSUS,
    CONSENT_GIVEN,
    CONSENT_WITHDRAWN,
    DEFAULT_TOPIC,
    EVENT_ADAPTER,
    LEFT,
    RECORD_DESTROYED,
    REFERRAL,
    TRANSFER,
    Event,
)
from schemas.problems import describe_validation_error


class InvalidEvent(ValueError):
    """An event built with the helpers is not valid under contract v1."""


class NotRoutable(ValueError):
    """A record cannot be sent: its event type, hence its topic, cannot be told."""


class DeliveryError(Exception):
    """The broker did not acknowledge a record."""


class NotRecorded(DeliveryError):
    """Events the log signed no receipt for in time: perhaps never recorded. Sending
    them again is safe (the same id is recorded once: a duplicate's receipt)."""

    def __init__(self, message: str, event_ids: list[str], receipts: dict[int, DeliveryReceipt]):
        super().__init__(message)
        self.event_ids = event_ids
        #: The receipts that did come, by the event's index in what was sent.
        self.receipts = receipts


class NoLogKey(ValueError):
    """Waiting for receipts needs the log's verifier key to check them by."""


Wait = Literal["recorded", "acked"]
#: Told each event and its receipt's signed note, verbatim, as the receipt comes.
Keep = Callable[[Event, bytes], None]


@dataclass(frozen=True, slots=True)
class Route:
    topic: str
    key: bytes | None


def route(value: Any) -> Route:
    """The topic and record key for a decoded event: the contract's default topic for its
    type; keyed by the school URN for a census, by the pupil's UPN otherwise."""
    if not isinstance(value, dict):
        raise NotRoutable("not a JSON object")
    event_type = value.get("type")
    topic = DEFAULT_TOPIC.get(event_type) if isinstance(event_type, str) else None
    if topic is None:
        raise NotRoutable(
            "type missing or not an event type of contract v1"
            if event_type is None
            else "type is not an event type of contract v1"
        )
    return Route(topic, _key(str(event_type), value))


def _key(event_type: str, value: dict[str, Any]) -> bytes | None:
    data = value.get("data")
    if not isinstance(data, dict):
        return None
    key: Any = None
    if event_type == CENSUS:
        source = value.get("source")
        key = source.rsplit("/", 1)[-1] if isinstance(source, str) else None
    elif event_type in (TRANSFER, REFERRAL):
        pupils = data.get("pupils")
        if isinstance(pupils, list) and pupils and isinstance(pupils[0], dict):
            key = pupils[0].get("upn")
    else:
        key = data.get("upn")
    return key.encode() if isinstance(key, str) else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _instant(moment: datetime | str | None) -> str:
    if moment is None:
        return _now()
    return moment.isoformat() if isinstance(moment, datetime) else moment


def _day(day: date | str) -> str:
    return day.isoformat() if isinstance(day, date) else day


class SchoolEvents:
    """Builders of contract-valid events for one school (no I/O)."""

    def __init__(self, school_urn: str) -> None:
        self.source = f"/schools/{school_urn}"

    def _event(
        self,
        event_type: str,
        data: dict[str, Any],
        time: datetime | str | None,
        event_id: str | None,
    ) -> Event:
        value = {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "source": self.source,
            "type": event_type,
            "time": _instant(time),
            "datacontenttype": "application/json",
            "data": {k: v for k, v in data.items() if v is not None},
        }
        try:
            return EVENT_ADAPTER.validate_python(value)
        except ValidationError as exc:
            raise InvalidEvent(f"{event_type}: {describe_validation_error(exc)}") from None

    def _sharing(
        self,
        event_type: str,
        upns: Sequence[str] | Sequence[dict[str, str]],
        recipient: str,
        categories: Iterable[str],
        lawful_basis: str,
        channel: str,
        *,
        special_condition: str | None = None,
        consent_ref: str | None = None,
        oldest_record: dict[str, date | str] | None = None,
        purpose: str | None = None,
        time: datetime | str | None = None,
        event_id: str | None = None,
    ) -> Event:
        pupils = [p if isinstance(p, dict) else {"upn": p} for p in upns]
        data = {
            "recipient": recipient,
            "pupils": pupils,
            "categories": list(categories),
            "lawful_basis": lawful_basis,
            "special_condition": special_condition,
            "consent_ref": consent_ref,
            "oldest_record": (
                {k: _day(v) for k, v in oldest_record.items()} if oldest_record else None
            ),
            "channel": channel,
            "purpose": purpose,
        }
        return self._event(event_type, data, time, event_id)

    def census(self, upns: Sequence[str] | Sequence[dict[str, str]], **fields: Any) -> Event:
        """A census return; ``upns`` may be UPNs or ``{"upn": ..., "dob": ...}`` objects."""
        return self._sharing(CENSUS, upns, **fields)

    def transfer(self, upn: str, **fields: Any) -> Event:
        """A pupil's record sent to the next school (``recipient="school:{URN}"``)."""
        return self._sharing(TRANSFER, [upn], **fields)

    def referral(self, upn: str, **fields: Any) -> Event:
        """A pupil referred to an agency or the local authority."""
        return self._sharing(REFERRAL, [upn], **fields)

    def left(
        self,
        upn: str,
        left_on: date | str,
        destination: str = "unknown",
        time: datetime | str | None = None,
        event_id: str | None = None,
    ) -> Event:
        data = {"upn": upn, "left_on": _day(left_on), "destination": destination}
        return self._event(LEFT, data, time, event_id)

    def consent_given(
        self,
        upn: str,
        consent_ref: str,
        recipients: Iterable[str],
        categories: Iterable[str],
        time: datetime | str | None = None,
        event_id: str | None = None,
    ) -> Event:
        data = {
            "upn": upn,
            "consent_ref": consent_ref,
            "recipients": list(recipients),
            "categories": list(categories),
        }
        return self._event(CONSENT_GIVEN, data, time, event_id)

    def consent_withdrawn(
        self,
        upn: str,
        consent_ref: str,
        time: datetime | str | None = None,
        event_id: str | None = None,
    ) -> Event:
        return self._event(
            CONSENT_WITHDRAWN, {"upn": upn, "consent_ref": consent_ref}, time, event_id
        )

    def record_destroyed(
        self,
        upn: str,
        categories: Iterable[str] = ("*",),
        time: datetime | str | None = None,
        event_id: str | None = None,
    ) -> Event:
        data = {"upn": upn, "categories": list(categories)}
        return self._event(RECORD_DESTROYED, data, time, event_id)


def event_bytes(event: Event) -> bytes:
    """The record value for an event: its JSON, as the contract writes it."""
    # Python mode: the validated time and dates are datetime and date objects, which
    # orjson writes in RFC 3339 and ISO 8601 form.
    return orjson.dumps(event.model_dump(exclude_none=True, warnings=False))


class _Closing:
    """Closed on leaving a ``with`` block, whatever ended it."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *ended: object) -> None:
        self.close()

    def close(self, timeout: float = 30.0) -> None:
        raise NotImplementedError


class MisProducer(_Closing):
    """Sends records to the broker (kafka-python), each acknowledged by all replicas."""

    def __init__(self, broker: str | KafkaConfig) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        config = broker if isinstance(broker, KafkaConfig) else KafkaConfig(bootstrap=broker)
        self.config = config
        self._feed: ReceiptFeed | None = None
        try:
            self.producer = KafkaProducer(**producer_settings(config))
        except KafkaError as exc:
            raise DeliveryError(f"no Kafka broker answers at {config.bootstrap}: {exc}") from None

    def send_record(self, raw: bytes, topic: str | None = None) -> Any:
        """Start sending ``raw`` (one event's JSON) to its topic; a future of the ack.

        The record goes as given, byte for byte: the ledger records what the MIS sent.
        ``topic`` overrides the routing (and then ``raw`` need not even be JSON).
        """
        key: bytes | None = None
        if topic is None:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise NotRoutable("not valid JSON") from None
            where = route(value)
            topic, key = where.topic, where.key
        return self.producer.send(topic, value=raw, key=key)

    def send(self, event: Event, timeout: float = 30.0) -> None:
        """Send one event and wait for the broker's acknowledgement."""
        future = self.send_record(event_bytes(event))
        self.producer.flush(timeout)
        wait_for(future, timeout)

    def send_all(
        self,
        records: Iterable[bytes],
        on_ack: Callable[[], None] | None = None,
        timeout: float = 60.0,
    ) -> None:
        """Send every record, then wait for each acknowledgement in turn (``on_ack`` is told
        of each, for a progress bar); :class:`DeliveryError` for the first that has none.
        All are in flight at once, which is what makes a bulk send fast."""
        futures = [self.send_record(raw) for raw in records]
        self.producer.flush()
        for future in futures:
            wait_for(future, timeout)
            if on_ack is not None:
                on_ack()

    def send_recorded(
        self,
        records: Sequence[Outgoing],
        log: Verifier,
        timeout: float = 120.0,
        on_ack: Callable[[int], None] | None = None,
        on_receipt: OnReceipt | None = None,
        resend_after: float | None = RESEND_AFTER,
    ) -> Delivery:
        """Send every record and wait, at most ``timeout`` seconds after the last
        acknowledgement, for the log's receipt of each, sending again what still lacks one
        after ``resend_after`` seconds without a receipt (see
        :func:`pipeline.transport.receipts.deliver`); KafkaUnavailable when the broker
        has no receipts topic to read. The topic's reader is opened once and kept until
        :meth:`close`, so that sending one event at a time pays for it once."""
        if self._feed is None:
            self._feed = ReceiptFeed(self.config)
        return deliver(records, self, self._feed, log, timeout, on_ack, on_receipt, resend_after)

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout)

    def close(self, timeout: float = 30.0) -> None:
        if self._feed is not None:
            self._feed.close()
        self.producer.close(timeout)


def wait_for(future: Any, timeout: float = 30.0) -> Any:
    """The acknowledgement of a send, or :class:`DeliveryError` saying why there is none."""
    try:
        return future.get(timeout=timeout)
    except Exception as exc:
        raise DeliveryError(f"not acknowledged: {type(exc).__name__}: {exc}") from None


def log_verifier(log_vkey: str | Verifier) -> Verifier:
    """The log's verifier key, given as its one line of text (``sharing-audit log vkey``)
    or parsed; :class:`NoLogKey` saying what is wrong with a text that is not one."""
    try:
        verifier = log_vkey if isinstance(log_vkey, Verifier) else Verifier.parse(log_vkey)
    except NoteError as exc:
        raise NoLogKey(f"the log's verifier key is not one: {exc}") from None
    if verifier.kind != ED25519:
        raise NoLogKey("the log's verifier key is a witness's cosignature key, not a log's")
    return verifier


class MisClient(SchoolEvents, _Closing):
    """One school's MIS connection: build events with the helpers, send them, and keep the
    log's receipts. ``log_vkey`` is the log's verifier key, needed to wait for receipts.
    Not for several threads at once."""

    def __init__(
        self,
        broker: str | KafkaConfig,
        school_urn: str,
        log_vkey: str | Verifier | None = None,
    ) -> None:
        SchoolEvents.__init__(self, school_urn)
        self.log = None if log_vkey is None else log_verifier(log_vkey)
        self.producer = MisProducer(broker)

    @overload
    def send(
        self,
        event: Event,
        wait: Literal["recorded"] = ...,
        timeout: float = ...,
        *,
        keep: Keep | None = ...,
    ) -> DeliveryReceipt: ...
    @overload
    def send(
        self, event: Event, wait: Literal["acked"], timeout: float = ..., *, keep: None = ...
    ) -> None: ...

    def send(
        self,
        event: Event,
        wait: Wait = "recorded",
        timeout: float = 30.0,
        *,
        keep: Keep | None = None,
    ) -> DeliveryReceipt | None:
        """Send one event; with ``wait="recorded"``, its receipt, verified (else
        :class:`NotRecorded` after ``timeout`` seconds); with ``"acked"``, None once the
        broker took it. ``keep`` is given the receipt's signed note, verbatim: what a school
        keeps to hold the log to it (``sharing-audit audit receipts``)."""
        if wait == "acked":
            self.producer.send(event, timeout)
            return None
        return self.send_all([event], wait, timeout, keep=keep)[0]

    @overload
    def send_all(
        self,
        events: Iterable[Event],
        wait: Literal["recorded"] = ...,
        timeout: float = ...,
        *,
        keep: Keep | None = ...,
    ) -> list[DeliveryReceipt]: ...
    @overload
    def send_all(
        self,
        events: Iterable[Event],
        wait: Literal["acked"],
        timeout: float = ...,
        *,
        keep: None = ...,
    ) -> None: ...

    def send_all(
        self,
        events: Iterable[Event],
        wait: Wait = "recorded",
        timeout: float = 60.0,
        *,
        keep: Keep | None = None,
    ) -> list[DeliveryReceipt] | None:
        """Send many events at once; with ``wait="recorded"``, their receipts in order, or
        :class:`NotRecorded` naming every event without one ``timeout`` seconds after the
        broker took the last. ``keep`` is given each event and its receipt's signed note
        as it comes, so that what came is kept even when others do not come."""
        events = list(events)
        if wait == "acked":
            self.producer.send_all([event_bytes(e) for e in events], timeout=timeout)
            return None
        if self.log is None:
            raise NoLogKey(
                "wait='recorded' needs the log's verifier key: MisClient(..., log_vkey=...), "
                "as sharing-audit log vkey prints it; wait='acked' only learns that the "
                "broker took the events"
            )
        records = [Outgoing(event_bytes(e), e.id) for e in events]
        on_receipt = None if keep is None else lambda i, held: keep(events[i], held.note)
        delivery = self.producer.send_recorded(records, self.log, timeout, on_receipt=on_receipt)
        receipts = {i: held.receipt for i, held in delivery.held.items()}
        if len(receipts) < len(events):
            raise _not_recorded(events, delivery, timeout)
        return [receipts[i] for i in range(len(events))]

    def close(self, timeout: float = 30.0) -> None:
        self.producer.close(timeout)


def _not_recorded(events: list[Event], delivery: Delivery, timeout: float) -> NotRecorded:
    """The error naming each event without a receipt, and why it has none."""
    why = {i: f"no receipt within {timeout:g}s" for i in delivery.missing}
    why.update(delivery.unsent)
    named = "; ".join(f"event {events[i].id}: {reason}" for i, reason in sorted(why.items()))
    receipts = {i: held.receipt for i, held in delivery.held.items()}
    return NotRecorded(named, [events[i].id for i in sorted(why)], receipts)
