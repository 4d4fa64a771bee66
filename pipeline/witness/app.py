"""The witness over HTTP: ``POST /add-checkpoint`` as C2SP tlog-witness specifies it,
``GET /<origin hash>/checkpoint`` for monitors, and ``GET /`` naming the witness and the
logs it witnesses."""

from __future__ import annotations

import hashlib
import time

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import Engine

from pipeline.logging import get_logger
from pipeline.transparency.note import Signer, Verifier
from pipeline.transparency.witness import MAX_REQUEST, SIZE_TYPE, UNSEEN, add_checkpoint
from pipeline.witness.state import held, keep, kept_note

log = get_logger(__name__)
__all__ = ["MAX_REQUEST", "create_witness"]


async def bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it is known to exceed ``limit`` bytes: from
    its declared length, before reading any of it, or once that much has arrived (the
    request is unauthenticated: it must cost the witness no more than ``limit``)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_witness(engine: Engine, witness: Signer, logs: list[Verifier]) -> FastAPI:
    by_origin: dict[str, list[Verifier]] = {}
    for key in logs:
        by_origin.setdefault(key.name, []).append(key)
    by_hash = {hashlib.sha256(name.encode()).hexdigest(): name for name in by_origin}
    api = FastAPI(title="sharing-audit witness", docs_url=None, redoc_url=None)

    @api.get("/", response_class=PlainTextResponse)
    def about() -> str:
        names = "".join(f"{name}\n" for name in sorted(by_origin))
        return f"witness {witness.verifier.vkey()}\nlogs:\n{names}"

    @api.get("/{origin_hash}/checkpoint")
    def checkpoint(origin_hash: str) -> Response:
        """tlog-witness's monitor retrieval: the latest checkpoint cosigned for the log
        whose origin's SHA-256 is ``origin_hash``, with the log's signature and the
        witness's cosignature; 404 if it never cosigned one."""
        origin = by_hash.get(origin_hash)
        note = kept_note(engine, origin) if origin is not None else None
        if note is None:
            return PlainTextResponse("no checkpoint cosigned for that log\n", 404)
        return PlainTextResponse(note)

    @api.post("/add-checkpoint")
    async def add(request: Request) -> Response:
        body = await bounded_body(request, MAX_REQUEST)
        if body is None:
            return PlainTextResponse(f"request over {MAX_REQUEST} bytes\n", status_code=413)
        now = held(engine)
        answer = add_checkpoint(body, by_origin, now, witness, int(time.time()))
        if answer.cosigned is not None:
            before = now.get(answer.cosigned.origin, UNSEEN)
            if not keep(engine, before, answer.cosigned, answer.kept):
                current = held(engine).get(answer.cosigned.origin, UNSEEN)
                return Response(f"{current.size}\n", 409, headers={"content-type": SIZE_TYPE})
            log.info(
                "checkpoint_cosigned", origin=answer.cosigned.origin, size=answer.cosigned.size
            )
        else:
            log.warning("checkpoint_refused", status=answer.status, reason=answer.body.strip())
        return Response(answer.body, answer.status, headers={"content-type": answer.content_type})

    return api
