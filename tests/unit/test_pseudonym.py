"""Pseudonyms and identity-row MACs are HMAC-SHA256 under the ledger's key, so anyone
holding the key can recompute them with any HMAC implementation. The expected values
below were computed with ``openssl dgst -sha256 -mac HMAC``, not with this code."""

from __future__ import annotations

from pathlib import Path

from pipeline.keyfiles import create_key_file
from pipeline.pseudonym import pseudonymiser

KEY = b"\xb3" * 32
UPN = "U850123426007"
PSEUDONYM = "bbc90139f39e36ac0e27ea4f2cdec6be26f351f2d1d739dfc9c1d0b6581970f2"


def test_a_pseudonym_is_the_hmac_sha256_of_the_normalised_upn() -> None:
    assert pseudonymiser(KEY)(UPN.lower()) == PSEUDONYM


def test_an_identity_mac_is_the_hmac_sha256_of_its_row() -> None:
    mac = pseudonymiser(KEY).identity_mac
    assert mac(PSEUDONYM, UPN, "2012-09-01") == (
        "6c924b3390ebb263703c0a6a0f0212f0bade846c6fea5da21a0d946bbe759c9e"
    )
    assert mac(PSEUDONYM, UPN, None) == (
        "48edf92ac4d4467f33edb4efd64980a4a7eaadf656f7acfc095f642b1eeb79f3"
    )


def test_the_keys_fingerprint_is_the_hmac_sha256_of_its_label() -> None:
    assert pseudonymiser(KEY).fingerprint == (
        "2afcf23cae40d5b8c67405350a02830eef13166b87bc7ee92ff9fd4690afcec5"
    )


def test_a_mac_does_not_depend_on_the_messages_before_it() -> None:
    fresh = pseudonymiser(KEY).identity_mac(PSEUDONYM, UPN, None)
    used = pseudonymiser(KEY)
    used(UPN)
    used.identity_mac(PSEUDONYM, UPN, "2012-09-01")
    assert used.identity_mac(PSEUDONYM, UPN, None) == fresh


def test_a_key_file_made_by_two_processes_at_once_holds_the_first_key_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db.key"
    create_key_file(path, bytes(32))
    create_key_file(path, bytes(range(32)))  # the one that lost the race: no error
    assert path.read_text() == bytes(32).hex() + "\n"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # nothing left aside
