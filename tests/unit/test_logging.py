"""Log events never carry a pupil identifier."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from pipeline.logging import REDACTED, configure, redact_pupil_identifiers
from tests.factory import upn


def redact(**event: Any) -> dict[str, Any]:
    return dict(redact_pupil_identifiers(None, "info", event))


def test_identifying_keys_are_redacted_at_any_depth() -> None:
    out = redact(event="x", upn=upn(1), data={"pupils": [{"upn": upn(2)}], "dob": "2016-01-01"})
    assert out["upn"] == REDACTED
    assert out["data"] == {"pupils": REDACTED, "dob": REDACTED}


def test_a_upn_inside_a_message_is_redacted() -> None:
    out = redact(event=f"could not decide pupil {upn(3)} today")
    assert upn(3) not in out["event"]
    assert REDACTED in out["event"]


def test_pseudonyms_and_other_values_are_kept() -> None:
    pseudonym = "ab" * 32
    out = redact(event="batch_recorded", pupil=pseudonym, entries=5, rule="consent.missing")
    assert out == {
        "event": "batch_recorded",
        "pupil": pseudonym,
        "entries": 5,
        "rule": "consent.missing",
    }


def _written(u: str) -> list[str]:
    """A UPN as it reaches a log: in any case, URL-encoded, or typed in groups."""
    return [
        u.lower(),
        "".join(f"%{ord(c):02X}" for c in u),
        "%25" + "%25".join(f"{ord(c):02X}" for c in u),  # encoded twice
        f"{u[:4]}+{u[4:7]}+{u[7:]}",
        f"{u[:4]} {u[4:7]}-{u[7:]}",
    ]


def test_a_upn_is_redacted_whatever_its_case_or_encoding() -> None:
    for written in _written(upn(4)):
        line = f'127.0.0.1 - "GET /entries?upn={written}&kind=read HTTP/1.1" 200'
        out = redact(event=line)["event"]
        assert REDACTED in out, written
        assert upn(4) not in out.upper().replace("%", "").replace("+", "").replace(" ", "")


def test_timestamps_seqs_and_event_ids_are_not_mistaken_for_upns() -> None:
    text = "seq 123456789012 at 2026-07-21T09:30:00+01:00 event referral-12345678901b"
    assert redact(event=text)["event"] == text


def test_a_library_loggers_traceback_reaches_json_logs_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure(json=True)
    try:
        raise ValueError(f"broker refused a record keyed {upn(5)}")
    except ValueError:
        logging.getLogger("aiokafka.producer").exception("send failed")
    finally:
        root.handlers[:], root.level = handlers, level
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "send failed" and line["logger"] == "aiokafka.producer"
    assert "Traceback" in line["exception"] and "ValueError" in line["exception"]
    assert upn(5) not in line["exception"] and REDACTED in line["exception"]


def test_at_the_command_line_the_kafka_clients_records_are_left_out_and_ours_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure(level="WARNING", json=True, quiet_clients=True)
    try:
        try:
            raise KeyError("<socket.socket [closed] fd=-1> is not registered")
        except KeyError:
            logging.getLogger("kafka.net.selector").exception("Connection failed")
        logging.getLogger("pipeline.transport.receipts").warning("receipts_late")
    finally:
        configure(json=True)  # and the client's records are let through again
        root.handlers[:], root.level = handlers, level
    written = capsys.readouterr().err
    assert "Connection failed" not in written and "Traceback" not in written
    assert json.loads(written.strip().splitlines()[-1])["event"] == "receipts_late"
    assert logging.getLogger("kafka").level == logging.NOTSET


def test_a_worker_keeps_the_kafka_clients_errors(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure(level="WARNING", json=True)
    try:
        logging.getLogger("kafka.conn").error("Connection lost")
    finally:
        root.handlers[:], root.level = handlers, level
    last = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert last["event"] == "Connection lost"
