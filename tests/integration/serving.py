"""The app served for real on a free port: in this process (for tests in a browser), or
by ``sharing-audit serve`` in processes of its own, as it is deployed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from pipeline.transport.broker import free_port

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: install the Debian packages chromium and chromium-driver (.ci/run does)",
)


def sign_in(page: Any, address: str, token: str) -> None:
    """Sign ``page`` (Playwright's) in to the desk at ``address`` with ``token``, as a
    person does on the sign-in page; it is left on the queue."""
    page.goto(f"{address}/desk/signin")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{address}/desk")


@contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` listening on 127.0.0.1; its address. Stopped on leaving."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def served_by_cli(url: str, env: dict[str, str], workers: int = 2) -> Iterator[str]:
    """``sharing-audit serve --workers N`` on the ledger at ``url``, in processes of its
    own (so that clients in this process do not share its interpreter); its address.
    Stopped on leaving."""
    port = free_port()
    command = [sys.executable, "-m", "pipeline.cli", "serve", "--db", url, "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env={**os.environ, "SHARING_AUDIT_LOG_LEVEL": "WARNING", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{address}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield address
    finally:
        server.terminate()
        server.wait(30)
