"""Builders for contract-valid events, so each test states only what it is about."""

from __future__ import annotations

from typing import Any

import orjson
from stdnum.gb import upn as stdnum_upn

SCHOOL = "/schools/116234"
NEXT_SCHOOL = "school:116512"
_counter = iter(range(1, 10**9))


def upn(serial: int, la: int = 850, temporary: bool = False) -> str:
    """A valid UPN for LA ``la``; temporary ones end in a letter."""
    if temporary:
        body = f"{la:03d}1234{26:02d}{serial % 100:02d}A"
    else:
        body = f"{la:03d}1234{26:02d}{serial % 1000:03d}"
    return stdnum_upn.calc_check_digit(body) + body


def _id(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


def envelope(event_type: str, data: dict[str, Any], time: str, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": extra.pop("id", None) or _id(event_type.split(".")[2]),
        "source": SCHOOL,
        "type": event_type,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
        **extra,
    }


def sharing(
    event_type: str,
    *,
    recipient: str,
    pupils: list[dict[str, Any]] | None = None,
    categories: list[str] | None = None,
    lawful_basis: str = "legal_obligation",
    special_condition: str | None = None,
    consent_ref: str | None = None,
    oldest_record: dict[str, str] | None = None,
    channel: str = "s2s",
    time: str = "2026-07-21T09:30:00+01:00",
    **extra: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "recipient": recipient,
        "pupils": pupils if pupils is not None else [{"upn": upn(1)}],
        "categories": categories or ["personal"],
        "lawful_basis": lawful_basis,
        "channel": channel,
    }
    for key, value in (
        ("special_condition", special_condition),
        ("consent_ref", consent_ref),
        ("oldest_record", oldest_record),
    ):
        if value is not None:
            data[key] = value
    return envelope(event_type, data, time, **extra)


def census(**kw: Any) -> dict[str, Any]:
    kw.setdefault("recipient", "dfe")
    kw.setdefault("channel", "collect")
    return sharing("uk.school.census.submitted.v1", **kw)


def transfer(**kw: Any) -> dict[str, Any]:
    kw.setdefault("recipient", NEXT_SCHOOL)
    return sharing("uk.school.pupil.transferred.v1", **kw)


def referral(**kw: Any) -> dict[str, Any]:
    kw.setdefault("recipient", "agency:school-nursing")
    kw.setdefault("lawful_basis", "public_task")
    kw.setdefault("channel", "secure_email")
    return sharing("uk.school.pupil.referred.v1", **kw)


def left(
    pupil: str | None = None,
    left_on: str = "2026-07-17",
    destination: str = NEXT_SCHOOL,
    time: str = "2026-07-17T15:00:00+01:00",
    **extra: Any,
) -> dict[str, Any]:
    data = {"upn": pupil or upn(1), "left_on": left_on, "destination": destination}
    return envelope("uk.school.pupil.left.v1", data, time, **extra)


def consent_given(
    pupil: str | None = None,
    ref: str = "C-1",
    recipients: list[str] | None = None,
    categories: list[str] | None = None,
    time: str = "2026-07-01T09:00:00+01:00",
    **extra: Any,
) -> dict[str, Any]:
    data = {
        "upn": pupil or upn(1),
        "consent_ref": ref,
        "recipients": recipients or ["agency:school-nursing"],
        "categories": categories or ["personal", "medical"],
    }
    return envelope("uk.school.consent.given.v1", data, time, **extra)


def consent_withdrawn(
    pupil: str | None = None,
    ref: str = "C-1",
    time: str = "2026-07-10T09:00:00+01:00",
    **extra: Any,
) -> dict[str, Any]:
    data = {"upn": pupil or upn(1), "consent_ref": ref}
    return envelope("uk.school.consent.withdrawn.v1", data, time, **extra)


def destroyed(
    pupil: str | None = None,
    categories: list[str] | None = None,
    time: str = "2026-07-10T09:00:00+01:00",
    **extra: Any,
) -> dict[str, Any]:
    data = {"upn": pupil or upn(1), "categories": categories or ["*"]}
    return envelope("uk.school.record.destroyed.v1", data, time, **extra)


def line(event: Any) -> bytes:
    return orjson.dumps(event)
