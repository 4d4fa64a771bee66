"""What the ledger keeps of a digest, of a JSON text quoting digests and of a payload
reads back exactly as written."""

from __future__ import annotations

import hashlib
import re

from hypothesis import given
from hypothesis import strategies as st

from pipeline.canonical import canonical_json
from pipeline.ledger.records.payloads import (
    oldest_record_in,
    oldest_record_of,
    packed_payload,
    unpacked_payload,
)
from pipeline.ledger.storage.dialects import POSTGRESQL
from pipeline.ledger.storage.models import (
    JSON_FORMAT,
    NOT_AS_WRITTEN,
    LedgerEntry,
    packed_digest,
    packed_json,
    read_unpacker,
    unpacked_digest,
    unpacked_json,
)
from pipeline.ledger.storage.models import _unpacked_mark_by_mark as read_mark_by_mark

_DIGEST = hashlib.sha256(b"pupil").hexdigest()


def test_a_sha256_in_hex_is_kept_in_its_32_bytes() -> None:
    digest = hashlib.sha256(b"entry").hexdigest()
    assert packed_digest(digest) == bytes.fromhex(digest)
    assert unpacked_digest(packed_digest(digest)) == digest


@given(st.text())
def test_any_text_in_a_digest_column_reads_back_as_written(text: str) -> None:
    assert unpacked_digest(packed_digest(text)) == text


@given(st.text(alphabet="0123456789abcdefABCDEF ", min_size=60, max_size=68))
def test_only_lowercase_hex_of_64_digits_is_kept_as_32_bytes(text: str) -> None:
    packed = packed_digest(text)
    assert (len(packed) == 32) == (re.fullmatch("[0-9a-f]{64}", text) is not None)
    assert unpacked_digest(packed) == text


def test_a_text_of_31_or_32_bytes_is_never_kept_in_32() -> None:
    for text in ("a" * 31, "b" * 32, "é" * 15 + "x"):
        assert len(packed_digest(text)) != 32
        assert unpacked_digest(packed_digest(text)) == text


def test_a_digest_quoted_in_json_is_kept_in_33_bytes() -> None:
    text = f'["{_DIGEST}"]'
    assert packed_json(text) == JSON_FORMAT + b"[\xff" + bytes.fromhex(_DIGEST) + b"]"
    assert unpacked_json(packed_json(text)) == text


def test_a_census_of_500_pupils_is_kept_in_about_half_its_text() -> None:
    keys = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(500)]
    text = canonical_json(keys).decode()
    assert len(packed_json(text)) == 1 + 500 * 33 + 499 + 2
    assert unpacked_json(packed_json(text)) == text


def test_json_quoting_no_digest_is_kept_as_its_utf8_after_the_format_byte() -> None:
    for text in ('{"action":"search","by":"dpo"}', "[]", "é", f'"{_DIGEST.upper()}"', ""):
        assert packed_json(text) == JSON_FORMAT + text.encode()


#: Texts a packer could take for a digest, or not: unquoted, too short or long, upper
#: case, quotes shared between neighbours, a quote before a quoted digest.
_AWKWARD = st.lists(
    st.sampled_from(['"', _DIGEST, _DIGEST[:63], _DIGEST + "0", _DIGEST.upper(), ",", "é", "\\"]),
    max_size=8,
).map("".join)


@given(st.one_of(st.text(), _AWKWARD))
def test_any_json_text_reads_back_as_written(text: str) -> None:
    assert unpacked_json(packed_json(text)) == text


@given(st.binary())
def test_bytes_no_writer_made_read_as_some_text_never_an_error(stored: bytes) -> None:
    assert isinstance(unpacked_json(stored), str)


#: Lists of digests whose bytes hold what marks the list: 0xff and commas.
_LISTED_DIGESTS = st.lists(
    st.one_of(
        st.binary(min_size=32, max_size=32),
        st.sampled_from([b"\xff" * 32, b",\xff" * 16, b"\xff," * 16, b"," * 32]),
    ),
    min_size=1,
    max_size=40,
)


@given(_LISTED_DIGESTS)
def test_a_list_of_digests_reads_back_as_written_whatever_their_bytes(
    digests: list[bytes],
) -> None:
    text = canonical_json([d.hex() for d in digests]).decode()
    assert unpacked_json(packed_json(text)) == text


#: Packed lists of digests, then cut, lengthened or with a byte changed: values a list's
#: quick reading must leave to the reading mark by mark, or read exactly as it does.
_NEAR_LISTS = st.tuples(
    _LISTED_DIGESTS.map(lambda ds: packed_json(canonical_json([d.hex() for d in ds]).decode())),
    # Anywhere, or where the list keeps a mark or a comma (after its format byte and "[").
    st.one_of(
        st.integers(min_value=0, max_value=2000),
        st.integers(min_value=0, max_value=40).flatmap(
            lambda k: st.sampled_from([2 + 34 * k, 2 + 34 * k + 33])
        ),
    ),
    st.sampled_from([b"", b"\xff", b",", b"]", b"[", b"\x01", b"a"]),
    st.sampled_from(["replace", "insert", "cut", "none"]),
).map(
    lambda t: (
        t[0][: t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]) + 1 :]
        if t[3] == "replace"
        else t[0][: t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]) :]
        if t[3] == "insert"
        else t[0][: t[1] % len(t[0])]
        if t[3] == "cut"
        else t[0]
    )
)


@given(
    _LISTED_DIGESTS.map(lambda ds: packed_json(canonical_json([d.hex() for d in ds]).decode())),
    st.integers(min_value=0, max_value=40),
    st.sampled_from(["mark", "comma", "[", "]"]),
    st.integers(min_value=0, max_value=255),
)
def test_a_list_with_a_mark_comma_or_bracket_changed_reads_as_it_does_mark_by_mark(
    packed: bytes, k: int, where: str, byte: int
) -> None:
    at = {"mark": 2 + 34 * k, "comma": 2 + 34 * k + 33, "[": 1, "]": len(packed) - 1}[where]
    stored = packed[:at] + bytes((byte,)) + packed[at + 1 :]
    assert unpacked_json(stored) == read_mark_by_mark(stored)


@given(st.one_of(_NEAR_LISTS, st.binary()))
def test_a_list_read_at_once_reads_as_it_does_mark_by_mark(stored: bytes) -> None:
    assert unpacked_json(stored) == read_mark_by_mark(stored)


@given(st.one_of(_NEAR_LISTS, st.binary()))
def test_a_check_of_the_chain_reads_a_list_as_written_only_where_the_writer_packs_it_so(
    stored: bytes,
) -> None:
    text = read_mark_by_mark(stored)
    as_written = packed_json(text) == stored
    unpack = read_unpacker(LedgerEntry.__table__, ["pupil_keys"], POSTGRESQL)  # type: ignore[attr-defined]
    assert unpack is not None
    assert unpack((stored,)) == ((text,) if as_written else (NOT_AS_WRITTEN + text,))


@given(st.text())
def test_any_payload_text_reads_back_as_written(text: str) -> None:
    assert unpacked_payload(packed_payload(text)) == text


def test_a_referral_payload_is_kept_in_well_under_half_its_text() -> None:
    payload = {
        "data": {
            "categories": ["personal", "medical"],
            "channel": "secure_email",
            "lawful_basis": "public_task",
            "pupils": [{"upn": hashlib.sha256(b"pupil").hexdigest()}],
            "purpose": "support for the pupil",
            "recipient": "agency:school-nursing",
        },
        "datacontenttype": "application/json",
        "id": "65e3f0a7-9475-445a-bf20-ae5a5918d93a",
        "source": "/schools/116006",
        "specversion": "1.0",
        "time": "2025-09-09T12:21:00+01:00",
        "type": "uk.school.pupil.referred.v1",
    }
    text = canonical_json(payload).decode()
    assert len(packed_payload(text)) < len(text) * 0.45


def test_a_payload_of_another_format_is_refused_by_name() -> None:
    try:
        unpacked_payload(b"\x07abc")
    except ValueError as refused:
        assert "unknown format" in str(refused)
    else:
        raise AssertionError("an unknown format was read")


def test_the_oldest_records_are_the_payloads_own_as_canonical_json() -> None:
    payload = {"data": {"oldest_record": {"sen": "2021-09-01", "attendance": "2020-09-01"}}}
    kept = '{"attendance":"2020-09-01","sen":"2021-09-01"}'
    assert oldest_record_in(payload) == kept
    assert oldest_record_of(canonical_json(payload).decode()) == kept
    assert oldest_record_of('{"data":{}}') is None
    assert oldest_record_of("not json") is None
