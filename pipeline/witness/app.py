"""The witness over HTTP: ``POST /add-checkpoint`` as C2SP tlog-witness specifies it, and
``GET /`` naming the witness and the logs it witnesses."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import Engine

from pipeline.logging import get_logger
from pipeline.transparency.note import Signer, Verifier
from pipeline.transparency.witness import SIZE_TYPE, UNSEEN, add_checkpoint
from pipeline.witness.state import held, keep

#: The largest request: a checkpoint with its cosignatures and 63 proof hashes fit in 8 KiB.
MAX_REQUEST = 64 * 1024
log = get_logger(__name__)


def create_witness(engine: Engine, witness: Signer, logs: list[Verifier]) -> FastAPI:
    by_origin = {v.name: v for v in logs}
    api = FastAPI(title="sharing-audit witness", docs_url=None, redoc_url=None)

    @api.get("/", response_class=PlainTextResponse)
    def about() -> str:
        names = "".join(f"{name}\n" for name in sorted(by_origin))
        return f"witness {witness.verifier.vkey()}\nlogs:\n{names}"

    @api.post("/add-checkpoint")
    async def add(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_REQUEST:
            return PlainTextResponse("request too large\n", status_code=413)
        now = held(engine)
        answer = add_checkpoint(body, by_origin, now, witness, int(time.time()))
        if answer.cosigned is not None:
            before = now.get(answer.cosigned.origin, UNSEEN)
            note = body.partition(b"\n\n")[2]
            if not keep(engine, before, answer.cosigned, note):
                current = held(engine).get(answer.cosigned.origin, UNSEEN)
                return PlainTextResponse(f"{current.size}\n", 409, media_type=SIZE_TYPE)
            log.info(
                "checkpoint_cosigned", origin=answer.cosigned.origin, size=answer.cosigned.size
            )
        else:
            log.warning("checkpoint_refused", status=answer.status, reason=answer.body.strip())
        return Response(answer.body, answer.status, media_type=answer.content_type)

    return api
