"""The log's origin, the name its checkpoints and verifier key carry: by default the URL
prefix the log is served under (C2SP tlog-tiles), and never changed under a log that has
already signed checkpoints, which would start another log beside it (a fork its auditors
and witnesses could not follow)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.api.log import router
from pipeline.cli.main import app
from pipeline.ledger.log.checkpoints import sign_if_grown
from pipeline.transparency.note import Signer, open_checkpoint
from tests.integration.test_verifiable_log import ENV, LOG_KEY, events, ledger_with, record

pytestmark = pytest.mark.integration
runner = CliRunner()
#: What the log was named when no origin was set, before the default followed its prefix.
OLD_DEFAULT = "sharing-audit.localhost/ledger"


def log(*args: str, url: str, origin: str | None = None) -> tuple[int, bytes, str]:
    env = {**ENV, "SHARING_AUDIT_LOG_ORIGIN": origin}  # None: unset
    done = runner.invoke(app, ["log", *args, "--db", url], env=env)
    return done.exit_code, done.stdout_bytes, done.stderr


def origin_of(note: bytes) -> str:
    return note.split(b"\n", 1)[0].decode()


def test_a_new_log_is_named_for_the_url_prefix_it_is_served_under(sqlite_url: str) -> None:
    ledger_with(sqlite_url, events(5))
    status, note, said = log("checkpoint", url=sqlite_url)
    assert status == 0, said
    assert origin_of(note) == "sharing-audit.localhost" + router.prefix


@pytest.mark.parametrize("origin", [None, ""])  # unset, or empty as compose leaves it
def test_a_log_signed_under_the_old_default_keeps_its_name_and_verifier_key(
    sqlite_url: str, origin: str | None
) -> None:
    ledger = ledger_with(sqlite_url, events(5))
    old = Signer(OLD_DEFAULT, bytes.fromhex(LOG_KEY))
    first = sign_if_grown(ledger, old)
    record(ledger, events(3, seed=21), first=10_000)
    status, vkey, said = log("vkey", url=sqlite_url, origin=origin)
    assert status == 0 and vkey.decode().strip() == old.verifier.vkey(), said
    status, note, said = log("checkpoint", url=sqlite_url, origin=origin)
    assert status == 0, said
    checkpoint, _ = open_checkpoint(note, old.verifier)
    assert first is not None and checkpoint.size > first.checkpoint.size


def test_an_origin_set_unlike_the_one_the_log_signed_under_is_refused_and_signs_nothing(
    sqlite_url: str,
) -> None:
    ledger = ledger_with(sqlite_url, events(5))
    assert log("checkpoint", url=sqlite_url, origin="audit.westfields.sch.uk/log")[0] == 0
    record(ledger, events(3, seed=21), first=10_000)
    for command in ("checkpoint", "vkey"):
        status, _, said = log(command, url=sqlite_url, origin="audit.eastfields.sch.uk/log")
        assert status == 2 and "Traceback" not in said
        assert "'audit.westfields.sch.uk/log'" in said and "'audit.eastfields.sch.uk/log'" in said
    status, note, _ = log("checkpoint", url=sqlite_url, origin="audit.westfields.sch.uk/log")
    assert status == 0 and origin_of(note) == "audit.westfields.sch.uk/log"
