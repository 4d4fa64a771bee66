"""``make demo`` as a newcomer meets it, in a fresh clone: the commands it prints run as
printed from the shell that started it (where ``sharing-audit`` is not on the PATH), the
desk opens on the token it prints, and nothing it leaves behind is there for ``git add``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.transport.broker import free_port

pytestmark = pytest.mark.integration

CHECKOUT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "sharing-audit"
#: The PATH of a shell in which the environment was never activated.
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"


def fresh_clone(folder: Path) -> Path:
    """A new git repository holding the project's .gitignore, committed: what a clone of
    the project looks like to ``git status``."""
    folder.mkdir()
    shutil.copy(CHECKOUT / ".gitignore", folder / ".gitignore")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run([*git, "add", ".gitignore"], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "clone"], cwd=folder, check=True)
    return folder


def untracked(clone: Path) -> list[str]:
    """What ``git status`` shows in ``clone``: anything there that ``git add .`` would take."""
    status = ["git", "status", "--porcelain", "--untracked-files=all", "--ignored=no"]
    shown = subprocess.run(status, cwd=clone, capture_output=True, text=True, check=True)
    return shown.stdout.splitlines()


def plain_shell(command: str, cwd: Path, **options: object) -> subprocess.Popen[bytes]:
    """``command`` run by ``sh`` as a person pastes it, with a PATH that has no .venv/bin."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {"PATH": PLAIN_PATH, "SHARING_AUDIT_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(["sh", "-c", command], cwd=cwd, env=env, **options)  # type: ignore[call-overload, no-any-return]


def demo_in(clone: Path, pupils: int) -> tuple[str, str, str]:
    """``sharing-audit demo`` run in ``clone`` from a plain shell: what it printed, the
    command it prints for the desk, and the DPO token it prints."""
    demo = plain_shell(f"{EXE} demo --pupils {pupils}", clone, stdout=subprocess.PIPE)
    out, _ = demo.communicate(timeout=300)
    said = out.decode()
    assert demo.returncode == 0, said
    lines = said.splitlines()
    desk = lines[lines.index("The DPO's queue: start the desk with") + 1].strip()
    token = lines[lines.index("(the search and both reports are there too):") + 1].strip()
    return said, desk, token


def test_a_printed_command_runs_as_printed_where_the_environment_is_not_active() -> None:
    printed = subprocess.run(
        [sys.executable, "-c", "from pipeline.cli.runnable import command_line as c; print(c())"],
        cwd=CHECKOUT,
        env={**os.environ, "PATH": PLAIN_PATH},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == str(EXE.resolve().relative_to(CHECKOUT))
    shell = plain_shell(f"{printed} serve --help", CHECKOUT, stdout=subprocess.PIPE)
    out, _ = shell.communicate(timeout=60)
    assert shell.returncode == 0 and b"Serve the breach desk" in out


@pytest.mark.slow
def test_after_the_demo_in_a_fresh_clone_its_desk_command_works_as_printed_and_git_sees_nothing(
    tmp_path: Path,
) -> None:
    clone = fresh_clone(tmp_path / "clone")
    said, desk, token = demo_in(clone, pupils=40)
    assert desk == f"{EXE.resolve()} serve --db sqlite:///demo-output/ledger.db"
    assert "source " in said  # how to put sharing-audit on the PATH, for next time

    port = free_port()  # the printed port, 8000, may be another test's
    server = plain_shell(f"{desk} --port {port}", clone, start_new_session=True)
    try:
        queue = _when_served(f"http://127.0.0.1:{port}/incidents", token)
        assert queue.status_code == 200 and queue.json(), queue.text
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(30)
    assert untracked(clone) == []
    # and nothing but its own folder (git shows no empty folder, such as Faust's data one)
    assert sorted(p.name for p in clone.iterdir()) == [".git", ".gitignore", "demo-output"]


def _when_served(url: str, token: str, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"nothing served at {url}"
            time.sleep(0.25)
