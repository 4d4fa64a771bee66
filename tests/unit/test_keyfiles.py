"""Keys in settings and key files are read one way (pipeline.keyfiles): the pseudonym
key, the log's signing key and a witness's key alike, each refusal naming where the key
was found, never showing it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.keyfiles import KEY_BYTES, hex_key, key_in_file
from pipeline.ledger.log.checkpoints import LogKeyError, log_signer
from pipeline.pseudonym import PseudonymKeyError, load_or_create_key
from pipeline.witness.state import WitnessKeyError, witness_signer


class Refused(Exception):
    pass


def test_a_key_of_64_hexadecimal_characters_is_its_32_bytes() -> None:
    assert hex_key(" " + "ab" * KEY_BYTES + "\n", "K", Refused) == bytes([0xAB]) * KEY_BYTES


@pytest.mark.parametrize(
    "text", ["zz" * 32, "ab" * 31, "ab" * 33, ""], ids=["not hex", "short", "long", "empty"]
)
def test_anything_else_is_refused_naming_where_it_was_found(text: str) -> None:
    with pytest.raises(Refused, match=r"^SETTING must be 64 hexadecimal characters"):
        hex_key(text, "SETTING", Refused)


def test_a_key_that_may_be_longer_is_refused_only_when_shorter() -> None:
    assert len(hex_key("ab" * 40, "K", Refused, exact=False)) == 40
    with pytest.raises(Refused, match="64 hexadecimal characters or more"):
        hex_key("ab" * 20, "K", Refused, exact=False)


def test_a_key_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "a folder, not a file"
    folder.mkdir()
    with pytest.raises(Refused, match="^" + re.escape(f"cannot read the key {folder}")):
        key_in_file(folder, "the key", Refused)


def test_a_key_file_holding_no_key_is_named_and_its_text_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db.key"
    path.write_text("secret-looking text\n")
    with pytest.raises(Refused) as refused:
        key_in_file(path, "the key", Refused)
    assert str(path) in str(refused.value) and "secret" not in str(refused.value)


@pytest.mark.parametrize(
    ("read", "fault"),
    [
        (lambda url: load_or_create_key(None, url), PseudonymKeyError),
        (lambda url: log_signer(None, "example.org/log", url), LogKeyError),
        (lambda url: witness_signer(None, "witness.example", url), WitnessKeyError),
    ],
    ids=["pseudonym key", "log key", "witness key"],
)
def test_each_key_kept_beside_a_database_is_refused_alike_when_spoiled(
    tmp_path: Path, read: object, fault: type[Exception]
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    for suffix in (".key", ".logkey", ".witnesskey"):
        (tmp_path / f"ledger.db{suffix}").write_text("not a key\n")
    with pytest.raises(fault, match="must be 64 hexadecimal characters"):
        read(url)  # type: ignore[operator]
