"""The Python SDK for MIS vendors: build contract events, validate them, send them.

Events are built with typed helpers that fill in the envelope (a fresh id, the school's
source, the time now unless given) and validate against contract v1 before anything is
sent, so a mistake is reported to the MIS where it is made, naming the field. Sending
routes each event to its topic with the contract's record key and waits for the broker
to acknowledge it::

    from pipeline.transport.mis import MisClient

    with MisClient("127.0.0.1:9092", school_urn="100000") as mis:
        referral = mis.referral(
            upn="H801200001001", recipient="agency:school-nursing",
            categories=["health"], lawful_basis="public_task",
            special_condition="9.2.h", channel="secure_email",
        )
        mis.send(referral)  # raises DeliveryError if the broker did not take it

Any Kafka client in any language can do the same by writing the JSON of
``schemas/json/`` to the topics; this module is a convenience, not a requirement.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any

import orjson
from pydantic import ValidationError

from pipeline.transport.kafka import KafkaConfig, producer_settings
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


class MisProducer:
    """Sends records to the broker (kafka-python), each acknowledged by all replicas."""

    def __init__(self, broker: str | KafkaConfig) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        config = broker if isinstance(broker, KafkaConfig) else KafkaConfig(bootstrap=broker)
        self.config = config
        try:
            self.producer = KafkaProducer(**producer_settings(config))
        except KafkaError as exc:
            raise DeliveryError(f"no Kafka broker answers at {config.bootstrap}: {exc}") from None

    def __enter__(self) -> MisProducer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

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

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.producer.close(timeout)


def wait_for(future: Any, timeout: float = 30.0) -> Any:
    """The acknowledgement of a send, or :class:`DeliveryError` saying why there is none."""
    try:
        return future.get(timeout=timeout)
    except Exception as exc:
        raise DeliveryError(f"not acknowledged: {type(exc).__name__}: {exc}") from None


class MisClient(SchoolEvents, MisProducer):
    """One school's MIS connection: build events with the helpers, send them."""

    def __init__(self, broker: str | KafkaConfig, school_urn: str) -> None:
        SchoolEvents.__init__(self, school_urn)
        MisProducer.__init__(self, broker)

    def __enter__(self) -> MisClient:
        return self
