"""The verifiable log over HTTP, for auditors (auditor, DPO and admin roles): the current
checkpoint, inclusion receipts, consistency proofs and an entry's leaf bytes, in the C2SP
formats ``sharing-audit log`` prints, and the C2SP tlog-tiles a mirror fetches to hold a
full copy (hash tiles and entry bundles). A checkpoint, a proof or a hash tile names no
pupil and is not recorded as a read; a leaf or an entry bundle is entries' content, and
its read is recorded as any entry's is."""

from __future__ import annotations

import gzip
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from pipeline.api.audit import MAX_SEQ
from pipeline.api.deps import Config, LedgerOf, Reader, reader_of
from pipeline.ledger.log.checkpoints import Signed, at_size
from pipeline.ledger.log.witnessing import current
from pipeline.ledger.reading.queries import Filters, entry_at, in_scope
from pipeline.ledger.reading.reads import opened, record_read
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import (
    consistency_proof,
    inclusion_proof,
    leaf_bytes,
    leaves,
    tile_hashes,
)
from pipeline.transparency.auditor import ConsistencyProof
from pipeline.transparency.receipt import receipt_for
from pipeline.transparency.tiles import (
    TILE_WIDTH,
    BadTilePath,
    EntryTooLarge,
    bundle,
    parse_tile_path,
)

router = APIRouter(prefix="/log", tags=["verifiable log"])
TEXT = "text/plain; charset=utf-8"
#: The checkpoint moves on as the log grows, and a partial tile is outgrown by its full
#: tile (and may then be dropped): kept a few seconds, no more (C2SP tlog-tiles).
BRIEF = {"Cache-Control": "private, max-age=5"}
#: A full tile never changes once served. Only the reader who fetched it may keep it: the
#: log is for signed-in readers, and a bundle's entries are read only as a recorded read.
LASTING = {"Cache-Control": "private, max-age=31536000, immutable"}
OCTETS = "application/octet-stream"


def served(ledger: Ledger, quorum: int, size: int | None = None) -> Signed:
    """The checkpoint of ``size``, else the current one (the latest, or the latest that
    ``quorum`` witnesses cosigned: SHARING_AUDIT_WITNESS_QUORUM); 404 if there is none."""
    with ledger.engine.connect() as connection:
        signed = at_size(connection, size) if size is not None else current(connection, quorum)
    if signed is None:
        raise HTTPException(404, "no such checkpoint" if size else "no checkpoint yet")
    return signed


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether a client's ``Accept-Encoding`` admits gzip (RFC 9110, 12.5.3): named with a
    weight above 0, or not named and admitted by ``*``. A weight of 0 is a refusal, so
    finding "gzip" in the header is not enough."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        weights.setdefault(coding.lower(), weight)
    return weights.get("gzip", weights.get("*", 0.0)) > 0


def answer(request: Request, body: bytes, media_type: str, headers: dict[str, str]) -> Response:
    """``body`` as the answer to a GET; to a HEAD, its headers (its length included) and
    none of its bytes, which is why a HEAD of a bundle is no read of its entries."""
    if request.method == "HEAD":
        return Response(
            b"", media_type=media_type, headers={**headers, "Content-Length": str(len(body))}
        )
    return Response(body, media_type=media_type, headers=headers)


@router.get("/checkpoint", response_class=Response, responses={200: {"content": {TEXT: {}}}})
def checkpoint(request: Request, ledger: LedgerOf, config: Config, user: Reader) -> Response:
    """The current checkpoint, a C2SP signed note, with its witnesses' cosignatures."""
    signed = served(ledger, config.witness_quorum)
    return answer(request, signed.with_cosignatures(), TEXT, BRIEF)


@router.get("/proof/inclusion/{seq}", response_class=Response)
def inclusion(
    ledger: LedgerOf,
    config: Config,
    user: Reader,
    seq: int,
    size: Annotated[
        int | None, Query(ge=1, le=MAX_SEQ, description="the checkpoint's size")
    ] = None,
) -> Response:
    """A C2SP tlog-proof receipt: entry ``seq`` is in the checkpoint of ``size``
    (default: the current one)."""
    signed = served(ledger, config.witness_quorum, size)
    if not 1 <= seq <= signed.checkpoint.size:
        raise HTTPException(
            404, f"entry {seq} is not in the checkpoint of size {signed.checkpoint.size}"
        )
    with ledger.engine.connect() as connection:
        if user.scope is not None and not in_scope(entry_at(connection, seq), user.scope):
            raise HTTPException(404, f"no entry {seq}")  # another school's: as if none
        proof = inclusion_proof(connection, seq - 1, signed.checkpoint.size)
    return Response(receipt_for(seq - 1, proof, signed.with_cosignatures()), media_type=TEXT)


@router.get("/proof/consistency", response_class=Response)
def consistency(
    ledger: LedgerOf,
    config: Config,
    user: Reader,
    old: Annotated[
        int, Query(ge=0, le=MAX_SEQ, description="the size of the tree proven extended")
    ],
) -> Response:
    """``old N``, the proof to the current checkpoint, a blank line, that checkpoint."""
    signed = served(ledger, config.witness_quorum)
    if old > signed.checkpoint.size:
        raise HTTPException(422, f"old {old} is larger than the current checkpoint")
    with ledger.engine.connect() as connection:
        proof = consistency_proof(connection, old, signed.checkpoint.size)
    return Response(ConsistencyProof(old, tuple(proof)).encode(signed.note), media_type=TEXT)


@router.get("/leaf/{seq}", response_class=Response)
def leaf(request: Request, ledger: LedgerOf, user: Reader, seq: int) -> Response:
    """Entry ``seq``'s leaf bytes, exactly: the canonical JSON its hashes cover. Its read
    is recorded."""
    if not 1 <= seq <= MAX_SEQ or opened(ledger, reader_of(user, "api"), seq) is None:
        raise HTTPException(404, f"no entry {seq}")
    with ledger.engine.connect() as connection:
        data = leaf_bytes(connection, seq)
    if data is None:
        raise HTTPException(404, f"no entry {seq}")
    return Response(data, media_type="application/json")


@router.get(
    "/tile/{path:path}", response_class=Response, responses={200: {"content": {OCTETS: {}}}}
)
def tile(request: Request, ledger: LedgerOf, config: Config, user: Reader, path: str) -> Response:
    """A C2SP hash tile (``tile/<L>/<N>[.p/<W>]``) or entry bundle
    (``tile/entries/<N>[.p/<W>]``), within the current checkpoint. An entry bundle's read
    is recorded, naming the entries it holds; bundles are gzipped when the client accepts
    it."""
    try:
        wanted = parse_tile_path(path)
    except BadTilePath as problem:
        raise HTTPException(404, f"no tile {path!r}: {problem}") from None
    if wanted.entries and user.scope is not None:
        # A bundle holds every school's entries: a reader confined to some schools fetches
        # their own entries' leaves instead.
        raise HTTPException(404, f"no tile {path!r} for a reader of some schools only")
    size = served(ledger, config.witness_quorum).checkpoint.size
    start, end = wanted.leaves()
    if end > size:
        raise HTTPException(404, f"tile {path!r} is beyond the current checkpoint (size {size})")
    kept = LASTING if wanted.width == TILE_WIDTH else BRIEF
    with ledger.engine.connect() as connection:
        if not wanted.entries:
            return answer(request, tile_hashes(connection, wanted), OCTETS, kept)
        as_of = Ledger.head(connection)[0]
        try:
            body = bundle(leaves(connection, start, end), start)
        except EntryTooLarge as large:
            raise HTTPException(
                422,
                f"entry {large.index + 1} is {large.length:,} bytes, more than an entry bundle "
                f"can hold; fetch it from /log/leaf/{large.index + 1}",
            ) from None
    if request.method != "HEAD":
        record_read(
            ledger,
            reader_of(user, "api"),
            "bundle",
            returned=end - start,
            as_of=as_of,
            filters=Filters(after_seq=start),
            through=end,
        )
    headers = {**kept, "Vary": "Accept-Encoding"}
    if accepts_gzip(request.headers.get("accept-encoding", "")):
        body = gzip.compress(body, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
    return answer(request, body, OCTETS, headers)


# HEAD of what a mirror fetches, as a mirror or a cache checks what it holds (left out
# of the API's description, where each would appear as an operation of its own).
router.add_api_route("/checkpoint", checkpoint, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/tile/{path:path}", tile, methods=["HEAD"], include_in_schema=False)
