"""How an event's payload is kept: deflated against a dictionary of the contract's words.

A payload (the decided event, pupils by pseudonym) is canonical JSON of a few hundred
bytes, most of it the same keys and words in every event: alone, deflate finds little
to take out of so short a text; primed with those words (``zdict``) it keeps a third.
Its digest in the entry's ``details.sides`` is of the text, so the text is what every
reader gets back, byte for byte (:func:`unpacked_payload`), to hash, re-decide or show.

The dictionary is part of the stored format: a payload packed with it can only be read
with it. A new one gets a new version byte; this one stays readable for ever.

The retention check asks the database which payloads declare records older than a day;
the database cannot read a deflated text, so a payload's ``data.oldest_record`` is also
kept beside it as JSON (:func:`oldest_record_of`), a projection of the payload that
``ledger verify`` compares with the payload itself.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from pipeline.canonical import canonical_json

#: The first byte of a payload packed with :data:`_DICTIONARY_1`.
_VERSION_1 = b"\x01"

#: Words of the event contract, the likeliest last (deflate reaches back 32 KiB, and
#: the nearer a match the fewer bits it costs). Never changed: see the module's note.
_DICTIONARY_1 = (
    b"uk.school.record.destroyed.v1uk.school.consent.withdrawn.v1uk.school.consent.given.v1"
    b"uk.school.pupil.left.v1special_educational_needsbiometricsafeguardingethnicity"
    b"religionfree_school_mealsexclusionsassessmentcharacteristicsbehaviourcontact"
    b"legitimate_interestsvital_interestscontractconsentlegal_obligation"
    b'"consent_ref":"postportals2ssecure_emailcollect"special_condition":"9.2.h"'
    b'"oldest_record":{"attendance":"20'
    b'{"data":{"categories":["personal","attendance","characteristics"],"channel":"collect",'
    b'"lawful_basis":"legal_obligation","pupils":[{"upn":"'
    b'"}],"purpose":"statutory census return","recipient":"dfe"},'
    b'"datacontenttype":"application/json","id":"","source":"/schools/1",'
    b'"specversion":"1.0","time":"2025-09-01T08:00:00+01:00",'
    b'"type":"uk.school.census.submitted.v1"}'
    b'{"data":{"categories":["personal","attendance","assessment"],"channel":"s2s",'
    b'"lawful_basis":"legal_obligation","pupils":[{"upn":"'
    b'"}],"purpose":"transfer of the pupil\'s record","recipient":"school:1'
    b'"},"datacontenttype":"application/json","id":"","source":"/schools/1",'
    b'"specversion":"1.0","time":"2026-01-01T08:00:00+00:00",'
    b'"type":"uk.school.pupil.transferred.v1"}'
    b'{"data":{"categories":["personal","medical"],"channel":"secure_email",'
    b'"lawful_basis":"public_task","pupils":[{"upn":"'
    b'"}],"purpose":"support for the pupil","recipient":"agency:school-nursing",'
    b'"special_condition":"9.2.h"},"datacontenttype":"application/json",'
    b'"id":"","source":"/schools/1","specversion":"1.0","time":"2025-09-01T12:00:00+01:00",'
    b'"type":"uk.school.pupil.referred.v1"}'
)


def packed_payload(text: str) -> bytes:
    """The bytes kept for a payload's ``text``."""
    # A hash table of memLevel 5, not zlib's 8 or 9: made afresh for every payload, the
    # larger one costs ten times the deflating of a few hundred bytes (here, about 15 us a
    # referral's payload against 130 or more), and deflates it no smaller.
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 5, zlib.Z_DEFAULT_STRATEGY, _DICTIONARY_1)
    return _VERSION_1 + deflate.compress(text.encode()) + deflate.flush()


def unpacked_payload(stored: bytes) -> str:
    """The payload's text, exactly as :func:`packed_payload` was given it."""
    if stored[:1] != _VERSION_1:
        raise ValueError(f"a stored payload of an unknown format ({bytes(stored[:1])!r})")
    inflate = zlib.decompressobj(-15, _DICTIONARY_1)
    return (inflate.decompress(bytes(stored[1:])) + inflate.flush()).decode()


def oldest_record_of(text: str) -> str | None:
    """The canonical JSON of the payload's ``data.oldest_record`` (the oldest record of
    each category the event shares), or None where it declares none."""
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return oldest_record_in(payload) if isinstance(payload, dict) else None


def oldest_record_in(payload: dict[str, Any]) -> str | None:
    """:func:`oldest_record_of` the payload ``payload`` decoded, as the writer holds it."""
    data = payload.get("data")
    oldest = data.get("oldest_record") if isinstance(data, dict) else None
    return None if oldest is None else canonical_json(oldest).decode()
