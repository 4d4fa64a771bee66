"""Where ``audit receipts`` gets what the log serves to prove a receipt: the log's HTTP API
(``GET /log/proof/inclusion/{seq}?size=N`` and ``/log/leaf/{seq}``, with a bearer token),
or a folder of files the log handed out (``{seq}.tlog-proof`` and, if kept,
``{seq}.leaf``). Nothing here judges what was served
(:mod:`pipeline.transparency.completeness` does); an answer that is not a proof is passed
on for it to refuse, and a log that does not answer is said so in words."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Protocol

import httpx

from pipeline.cli.runnable import command_line
from pipeline.shown import shown_text
from pipeline.transparency.completeness import Served

#: The most of an answer read: a proof is a few kilobytes; an entry's leaf can be large
#: (a census of a big school), never this large.
MAX_PROOF = 1 << 20
MAX_LEAF = 64 << 20
TIMEOUT_SECONDS = 30.0


class ProofSource(Protocol):
    def served(self, seq: int, size: int) -> Served: ...


class NoSource:
    """Neither --log nor --proofs given: nothing within the tree can be proven."""

    def served(self, seq: int, size: int) -> Served:
        return Served(problem="no proof: give --log URL --token TOKEN, or --proofs DIR")


class LogOverHttp:
    """The log's HTTP API, asked with an auditor's token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
        )

    def served(self, seq: int, size: int) -> Served:
        proof, problem = self._get(f"/log/proof/inclusion/{seq}?size={size}", MAX_PROOF)
        if problem is not None:
            return Served(problem=problem)
        leaf, _ = self._get(f"/log/leaf/{seq}", MAX_LEAF)
        return Served(proof, leaf)

    def latest_checkpoint(self) -> bytes | None:
        """The checkpoint the log serves as its latest, if it answers with one."""
        return self._get("/log/checkpoint", MAX_PROOF)[0]

    def _get(self, path: str, limit: int) -> tuple[bytes | None, str | None]:
        """The body of a 200 answer, or why there is none, in words."""
        try:
            with self.client.stream("GET", self.url + path) as answer:
                body = bytearray()
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        return (
                            None,
                            f"the log's answer to GET {path} is longer than {limit:,} bytes",
                        )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return None, f"cannot reach the log at {shown_text(self.url)}: {shown_text(exc)}"
        if answer.status_code in (401, 403):
            return None, f"the log refused the token (HTTP {answer.status_code} to GET {path})"
        if answer.status_code != 200:
            said = shown_text(bytes(body[:200]).decode("utf-8", "replace"))
            return None, f"the log answered {answer.status_code} to GET {path}: {said}"
        return bytes(body), None


class ProofFiles:
    """Proofs the log handed out as files: ``{seq}.tlog-proof``, ``{seq}.leaf``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def served(self, seq: int, size: int) -> Served:
        proof, problem = read_bounded(self.folder / f"{seq}.tlog-proof", MAX_PROOF)
        if problem is not None:
            return Served(problem=problem)
        leaf, _ = read_bounded(self.folder / f"{seq}.leaf", MAX_LEAF)
        return Served(proof, leaf)


def read_bounded(path: Path, limit: int) -> tuple[bytes | None, str | None]:
    """A regular file's bytes (not through a symbolic link, at most ``limit``), or why not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        prove = command_line("log", "prove", "SEQ", "--size", "N")
        return None, f"no proof {shown_text(path)} ({prove})"
    except OSError as exc:
        return None, f"cannot read {shown_text(path)}: {exc.strerror}"
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, f"{shown_text(path)} is not a regular file"
        data = stream.read(limit + 1)
    if len(data) > limit:
        return None, f"{shown_text(path)} is longer than {limit:,} bytes"
    return data, None
