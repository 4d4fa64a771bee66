"""A witness configured at one spelling of its address is the witness asked at any other
(its cosignature is checked, not skipped), and a password in its address is never shown."""

from __future__ import annotations

import pytest

from pipeline.ledger.log.witnessing import Witness, without_password, witness_at, witnesses_from
from pipeline.settings import WitnessSetting
from pipeline.transparency.note import COSIGNATURE, Signer

WITNESS = Signer("witness.example", bytes(range(32)), COSIGNATURE).verifier
LOG = Signer("log.example", bytes(range(32))).verifier


@pytest.mark.parametrize(
    ("configured", "asked"),
    [
        ("http://[::1]:8080", "http://[0:0:0:0:0:0:0:1]:8080/"),
        ("https://xn--bcher-kva.example/", "https://Bücher.example"),
        ("https://witness.example.", "HTTPS://WITNESS.EXAMPLE:443//"),
        ("http://127.0.0.1/w", "http://127.0.0.1:80/w/"),
    ],
    ids=["ipv6-long-form", "idn", "root-dot-case-port", "default-port-path"],
)
def test_one_address_spelt_two_ways_is_one_witness(configured: str, asked: str) -> None:
    assert witness_at([Witness(configured, WITNESS)], asked) is not None


@pytest.mark.parametrize(
    "asked",
    ["https://witness.example:8443", "http://witness.example", "https://witness.example/other"],
    ids=["another-port", "another-scheme", "another-path"],
)
def test_another_place_is_not_the_witness(asked: str) -> None:
    assert witness_at([Witness("https://witness.example", WITNESS)], asked) is None


def test_a_password_in_a_witnesss_address_is_not_shown() -> None:
    assert without_password("https://ops:s3cr3t@w.example/x") == "https://ops:***@w.example/x"
    assert without_password("https://w.example/x") == "https://w.example/x"


def test_a_logs_key_configured_as_a_witnesss_is_refused_naming_it_without_its_password() -> None:
    configured = [WitnessSetting(url="https://ops:s3cr3t@w.example/", vkey=LOG.vkey())]
    with pytest.raises(ValueError, match="a log's") as refused:
        witnesses_from(configured)
    assert "s3cr3t" not in str(refused.value) and "w.example" in str(refused.value)
