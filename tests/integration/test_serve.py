"""``sharing-audit serve`` as deployed: a process per core, each on the ledger's key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.policy.pack import Policy
from pipeline.transport.broker import free_port
from pipeline.users import Role, add_user
from tests.integration.breaches import KEY, ledger_with_breaches

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_several_workers_serve_the_desk_on_the_ledgers_key(
    sqlite_url: str, policy: Policy, tmp_path: Path
) -> None:
    ledger = ledger_with_breaches(sqlite_url, policy)
    token = add_user(ledger, "dpo", Role.DPO)
    port = free_port()
    env = {**os.environ, "SHARING_AUDIT_PSEUDONYM_KEY": KEY.hex()}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "serve",
            "--db",
            sqlite_url,
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        answers: list[int] = []
        # Two server processes starting on a loaded machine take their time: the test is of
        # what they answer, not how soon.
        deadline = time.monotonic() + 120
        while len(answers) < 20 and time.monotonic() < deadline:
            try:
                response = httpx.get(
                    f"{address}/incidents", timeout=5, headers={"Authorization": f"Bearer {token}"}
                )
                answers.append(response.status_code)
            except httpx.HTTPError:
                time.sleep(0.2)
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert answers and set(answers) == {200}, errors.decode()[-2000:]
