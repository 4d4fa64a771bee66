"""``sharing-audit serve``: the breach desk, the auditors' search and reports, the API."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from pipeline.cli.exits import policy_or_fail, school_or_fail, schools_or_fail
from pipeline.cli.options import (
    DbOption,
    PolicyOption,
    SchoolsOption,
    database_url,
    open_ledger,
    pseudonym_for,
)


def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(
            help="The TLS proxy's addresses (comma-separated, or *): their X-Forwarded-Proto "
            "and X-Forwarded-For are believed, so the desk knows it is served over HTTPS."
        ),
    ] = "127.0.0.1",
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processes serving at once (one per core).")
    ] = 1,
) -> None:
    """Serve the breach desk, the auditors' search and reports, and the HTTP API (its
    OpenAPI description at /openapi.json). Behind a TLS proxy on another host, name it
    with --forwarded-allow-ips: cookies are then marked Secure and HSTS is sent."""
    import uvicorn

    from pipeline.api.app import create_api

    pack = policy_or_fail(policy)
    register = schools_or_fail(schools)
    school = school_or_fail()
    ledger = open_ledger(db)
    api = create_api(
        ledger, policy=pack, pseudonym=pseudonym_for(db), schools=register, school=school
    )  # checked here, once
    print(
        f"serving on http://{host}:{port} (OpenAPI: http://{host}:{port}/openapi.json)", flush=True
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        "proxy_headers": True,
        "forwarded_allow_ips": forwarded_allow_ips,
    }
    if workers == 1:
        uvicorn.run(api, **options)
        return
    # Each worker process builds the same app from the settings: the ledger and pack are
    # passed on in the environment, as a container would set them.
    os.environ["SHARING_AUDIT_DATABASE_URL"] = database_url(db)
    if policy is not None:
        os.environ["SHARING_AUDIT_POLICY"] = policy
    if schools is not None:
        os.environ["SHARING_AUDIT_SCHOOLS"] = schools
    uvicorn.run("pipeline.api.app:app_from_settings", factory=True, workers=workers, **options)
