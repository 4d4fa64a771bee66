"""Log events never carry a pupil identifier."""

from __future__ import annotations

from typing import Any

from pipeline.logging import REDACTED, redact_pupil_identifiers
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
    assert out == {"event": "batch_recorded", "pupil": pseudonym, "entries": 5,
                   "rule": "consent.missing"}  # fmt: skip
