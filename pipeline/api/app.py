"""The HTTP API and pages, put together: the DPO's desk (:mod:`pipeline.api.desk`), the
auditors' search and reports (:mod:`pipeline.api.audit`), users (:mod:`pipeline.api.admin`)
and the pages (:mod:`pipeline.api.pages`), behind the guards every route stands behind.

Every request but ``/health`` needs ``Authorization: Bearer TOKEN`` (see
``sharing-audit users add``) or a desk session. A missing or unknown token gets 401, a
role that may not do what is asked gets 403; both are logged, without the token.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from pipeline.api import admin, audit, desk, log, metrics, notice_pages, pages, policy_pages
from pipeline.api.deps import Db, current_user, user_of, user_of_session
from pipeline.api.guards import add_guards
from pipeline.ledger.storage.store import Ledger, make_engine
from pipeline.ledger.writing.adoption import PacksInForce
from pipeline.ledger.writing.keys import bind_key, ledger_key
from pipeline.ledger.writing.pupils import finder
from pipeline.packs import load_pack, load_schools
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Controller, Schools
from pipeline.pseudonym import Pseudonymiser, pseudonymiser
from pipeline.settings import Settings, settings
from pipeline.users import User

#: Requests served at once, each on at most one of the ledger's connections at a time.
THREADS = 16


#: Every router of the app: the API's, then the desk's pages.
_ROUTERS = (
    desk.router,
    audit.router,
    log.router,
    admin.router,
    pages.router,
    notice_pages.router,
    policy_pages.router,
)


def create_api(
    ledger: Ledger,
    *,
    policy: Policy | None = None,
    pseudonym: Pseudonymiser | None = None,
    threads: int = THREADS,
    schools: Schools | None = None,
    school: Controller | None = None,
    config: Settings | None = None,
) -> FastAPI:
    """The app over ``ledger``. ``policy`` (default: the configured pack) explains
    entries and reports, and under a register of ``schools`` each school's own pack
    explains its entries; without one, ``school`` (default: as the settings give it) is
    the school subject-access reports name to parents; ``pseudonym`` (default: the
    ledger's own key) turns a UPN asked about into the key the ledger knows the pupil by.
    ``config`` (default: read from the environment now) is the only read of the settings:
    no request reads the environment.

    ``threads`` requests run at once, and the app's own pool keeps as many connections
    (and as many again for streamed exports): a request holds at most one at a time, so
    none waits on another while holding one, and a request that finds none free within
    a few seconds is answered 503 with ``Retry-After``.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    api = FastAPI(
        dependencies=[Depends(follow_adoptions)],
        title="sharing-audit",
        summary="The DPO's breach desk, the auditors' search and reports, and the ledger.",
        version="1",
        docs_url=None,  # Swagger UI would load its code from a CDN; read /openapi.json
        redoc_url=None,
        openapi_url=None,  # served below, to a user with a token as every route but /health
        lifespan=lifespan,
    )
    own = Ledger(make_engine(ledger.engine.url.render_as_string(False), pool_size=threads))
    api.state.ledger = own
    config = config or settings()
    api.state.settings = config
    api.state.policy = policy or load_pack(config.policy)
    api.state.schools = schools
    api.state.packs = PacksInForce(api.state.policy, schools)
    api.state.packs_looked_at = -FOLLOW_SECONDS
    api.state.school = school or config.school()
    api.state.pseudonym = _pseudonymiser_for(own, pseudonym, config.pseudonym_key)
    # A UPN typed into a search to the pseudonym its pupil is recorded under.
    api.state.find_pupil = finder(own)
    for router in _ROUTERS:
        api.include_router(router)
    metrics.install(api, own, config)

    def identify(bearer: str | None, session: str | None) -> User | None:
        if bearer:
            return user_of(own, bearer)
        return user_of_session(own, session) if session else None

    api.add_exception_handler(pages.SignInFirst, pages.to_signin)
    add_guards(api, identify, cookie=pages.COOKIE, open_paths={"/desk/signin"})
    pages.add_error_pages(api)

    @api.api_route("/openapi.json", methods=["GET", "HEAD"], include_in_schema=False)
    def description(user: Annotated[User, Depends(current_user)]) -> JSONResponse:
        """The API's OpenAPI description, for a user with a token: it names every route
        and what each takes, which is no business of a passer-by on the school network."""
        return JSONResponse(api.openapi())

    @api.get("/health")
    def health(db: Db) -> dict[str, str]:
        db.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    return api


#: How often, at most, the desk looks for packs adopted since (``policy adopt`` in another
#: process): an adoption explains the desk's pages within this many seconds.
FOLLOW_SECONDS = 1.0


def follow_adoptions(request: Request) -> None:
    """Explain by the packs in force: the configured ones as the ledger's adoptions have
    replaced them (see :class:`~pipeline.ledger.writing.adoption.PacksInForce`)."""
    state = request.app.state
    if time.monotonic() - state.packs_looked_at < FOLLOW_SECONDS:
        return
    with state.ledger.engine.connect() as connection:
        state.policy, state.schools = state.packs.current(connection)
    state.packs_looked_at = time.monotonic()


def _pseudonymiser_for(
    ledger: Ledger, given: Pseudonymiser | None, configured: str | None
) -> Pseudonymiser:
    """The given pseudonymiser, checked against the key the ledger is bound to (a desk on
    the wrong key would find no pupil, silently); else the ledger's own key."""
    if given is not None:
        bind_key(ledger, given)
        return given
    url = ledger.engine.url.render_as_string(hide_password=False)
    return pseudonymiser(ledger_key(ledger, configured, url))


def app_from_settings() -> FastAPI:
    """The app as each process of ``serve --workers N`` builds it: the ledger and the pack
    from the settings (``SHARING_AUDIT_DATABASE_URL``, ``SHARING_AUDIT_POLICY``)."""
    config = settings()
    schools = load_schools(config.schools) if config.schools else None
    return create_api(
        Ledger.open(config.database_url),
        policy=load_pack(config.policy),
        schools=schools,
        config=config,
    )
