"""Every command that takes ``--db`` uses, without it, the ledger SHARING_AUDIT_DATABASE_URL
names, as the README says; ``check`` alone does not (a trial run seals nothing), and says
so; a witness keeps its own state. Each command has its case here, and a command added
with ``--db`` and no case fails :func:`test_every_command_that_takes_db_has_its_case`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from pipeline.cli.main import app
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import ENTRY, Ledger
from pipeline.policy.pack import Policy
from pipeline.transparency.note import COSIGNATURE, Signer
from pipeline.transport.kafka import KafkaConfig, ensure_topics
from tests.factory import line, referral, upn
from tests.integration.breaches import KEY, ledger_with_breaches
from tests.mis_files import CTF_SECTIONS, ctf, ctf_pupil

pytestmark = pytest.mark.integration
runner = CliRunner()
SETTING = "SHARING_AUDIT_DATABASE_URL"


class Named:
    """The ledger SHARING_AUDIT_DATABASE_URL names (three entries, incidents 1 and 3), set
    for the test, and a working folder where a command that ignored it would make its
    default ledger."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder

    def run(self, *args: str, code: int = 0) -> Result:
        """``sharing-audit ARGS`` without --db; it ends with ``code``."""
        done = runner.invoke(app, list(args))
        said = done.stdout + done.stderr
        assert done.exit_code == code and "Traceback" not in said, said
        return done

    def with_db(self, *args: str) -> Result:
        """``sharing-audit ARGS --db URL``: a step before the one a case is about."""
        done = runner.invoke(app, [*args, "--db", self.url])
        assert done.exit_code == 0, done.stdout + done.stderr
        return done

    def entries(self) -> int:
        with Ledger.open(self.url).engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(ENTRY)).scalar_one())


@pytest.fixture
def named(tmp_path: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch) -> Iterator[Named]:
    url = f"sqlite:///{tmp_path}/named.db"
    ledger_with_breaches(url, policy).engine.dispose()
    folder = tmp_path / "working"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for name in ("SHARING_AUDIT_BROKER", "SHARING_AUDIT_LOG_VKEY", "SHARING_AUDIT_LOG_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(SETTING, url)
    monkeypatch.setenv("SHARING_AUDIT_PSEUDONYM_KEY", KEY.hex())
    yield Named(url, folder)
    assert sorted(p.name for p in folder.iterdir()) == [], "a default ledger was made"


Case = Callable[..., None]
CASES: dict[str, Case] = {}
#: Cases that need a broker (the ``kafka`` fixture) or start one.
SLOW = {"emit", "watch", "worker", "up"}


def case(command: str) -> Callable[[Case], Case]:
    def register(run: Case) -> Case:
        CASES[command] = run
        return run

    return register


# -- deciding and sending -------------------------------------------------------------


@case("check")
def _check(named: Named, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(line(referral(pupils=[{"upn": upn(7)}])) + b"\n")
    done = named.run("check", str(events), "--format", "jsonl")
    assert "writes nothing to the ledger SHARING_AUDIT_DATABASE_URL names" in done.stderr
    assert named.entries() == 3
    os.environ.pop(SETTING)
    alone = runner.invoke(app, ["check", str(events), "--format", "jsonl"])
    assert done.stdout == alone.stdout and alone.stderr == ""  # the contract's output, as ever


@case("emit")
def _emit(named: Named, tmp_path: Path, kafka: KafkaConfig) -> None:
    """The log's key to check receipts by is the named ledger's: without it there is none,
    and emit would refuse to wait for receipts it cannot check."""
    named.with_db("log", "vkey")
    ensure_topics(kafka)
    events = tmp_path / "events.jsonl"
    events.write_bytes(line(referral(pupils=[{"upn": upn(7)}])) + b"\n")
    done = named.run("emit", str(events), "--broker", kafka.bootstrap, "--timeout", "1", code=1)
    assert "line 1: no receipt within" in done.stderr


@case("watch")
def _watch(named: Named, tmp_path: Path, kafka: KafkaConfig) -> None:
    named.with_db("log", "vkey")
    ensure_topics(kafka)
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "a.xml").write_bytes(ctf(ctf_pupil(1, CTF_SECTIONS["sen"][0])))
    args = ["watch", str(exports), "--broker", kafka.bootstrap, "--settle", "0", "--once"]
    done = named.run(*args, "--timeout", "1", code=1)
    assert "waiting: a.xml: 1 of 1 event holds no receipt" in done.stdout


def _says_the_ledger(command: list[str], url: str) -> None:
    """``command`` run in a process of its own until it names its ledger, then stopped."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *command], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        said = [process.stdout.readline() for _ in range(2)]
        assert f"ledger: {url}\n" in said, said
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


@case("worker")
def _worker(named: Named, kafka: KafkaConfig) -> None:
    log = str(named.folder.parent / "worker.log")
    _says_the_ledger(["worker", "--broker", kafka.bootstrap, "--log-file", log], named.url)


@case("up")
def _up(named: Named) -> None:
    log = str(named.folder.parent / "worker.log")
    _says_the_ledger(["up", "--log-file", log], named.url)


@case("serve")
def _serve(named: Named, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import pipeline.api.app

    served: list[str] = []
    make = pipeline.api.app.create_api

    def create_api(ledger: Ledger, **options: Any) -> Any:
        served.append(ledger.engine.url.render_as_string())
        return make(ledger, **options)

    monkeypatch.setattr(pipeline.api.app, "create_api", create_api)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **options: None)
    named.run("serve")
    assert served == [named.url]


@case("reconcile")
def _reconcile(named: Named, tmp_path: Path, policy: Policy) -> None:
    sent = tmp_path / "sent.jsonl"
    sent.write_bytes(line(referral(pupils=[{"upn": upn(9)}])) + b"\n")
    done = named.run("reconcile", str(sent), code=1)
    assert "1 events sent, 0 recorded, 1 not recorded" in done.stdout
    assert named.entries() == 4  # its look-up, recorded as a read


# -- the ledger ---------------------------------------------------------------------------


@case("ledger verify")
def _ledger_verify(named: Named) -> None:
    assert named.run("ledger", "verify").stdout.startswith("ledger verified: 3 entries")


@case("ledger query")
def _ledger_query(named: Named) -> None:
    rows = named.run("ledger", "query", "--format", "jsonl").stdout.splitlines()
    assert [orjson.loads(row)["seq"] for row in rows] == [1, 2, 3]


@case("ledger stats")
def _ledger_stats(named: Named) -> None:
    assert named.run("ledger", "stats").stdout.startswith("entries: 3")


@case("ledger retention apply")
def _ledger_retention_apply(named: Named) -> None:
    """Its pupils never left: the named ledger's retention erases none of them."""
    done = named.run("ledger", "retention", "apply", "--as-of", "2090-01-01", "--dry-run")
    assert "it would erase 0 pupils, pass over 0" in done.stdout
    assert named.entries() == 3


@case("ledger rotate-key")
def _ledger_rotate_key(named: Named, tmp_path: Path) -> None:
    new_key = tmp_path / "new.key"
    done = named.run("ledger", "rotate-key", "--new-key-file", str(new_key))
    assert done.stdout.startswith("pseudonym key rotated (entry 4)") and new_key.exists()
    assert named.entries() == 4


@case("db upgrade")
def _db_upgrade(named: Named) -> None:
    assert (
        named.run("db", "upgrade").stdout.strip()
        == f"{named.url}: schema at revision {schema.head_revision()}"
    )


@case("db grant")
def _db_grant(named: Named, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL ledger named, that does not answer: the error names it."""
    nowhere = "postgresql+psycopg://nobody@127.0.0.1:9/ledger"
    monkeypatch.setenv(SETTING, nowhere)
    assert "127.0.0.1:9/ledger" in named.run("db", "grant", "desk", code=2).stderr


# -- the log ------------------------------------------------------------------------------


@case("log vkey")
def _log_vkey(named: Named) -> None:
    vkey = named.run("log", "vkey").stdout
    assert vkey.startswith("sharing-audit.localhost/log+")
    assert Path(named.url.removeprefix("sqlite:///") + ".logkey").exists()


@case("log checkpoint")
def _log_checkpoint(named: Named) -> None:
    assert named.run("log", "checkpoint").stdout.splitlines()[1] == "3"


@case("log leaf")
def _log_leaf(named: Named) -> None:
    assert orjson.loads(named.run("log", "leaf", "3").stdout)["seq"] == 3


@case("log prove")
def _log_prove(named: Named) -> None:
    named.with_db("log", "checkpoint")
    assert "\nindex 2\n" in named.run("log", "prove", "3").stdout


@case("log consistency")
def _log_consistency(named: Named) -> None:
    named.with_db("log", "checkpoint")
    assert named.run("log", "consistency", "--old", "3").stdout.startswith("old 3\n")


@case("log publish")
def _log_publish(named: Named, monkeypatch: pytest.MonkeyPatch) -> None:
    witness = Signer("witness.example.org", bytes(range(32)), COSIGNATURE).verifier.vkey()
    nowhere = [{"url": "http://127.0.0.1:9", "vkey": witness}]
    monkeypatch.setenv("SHARING_AUDIT_WITNESSES", orjson.dumps(nowhere).decode())
    monkeypatch.setenv("SHARING_AUDIT_WITNESS_DEADLINE_SECONDS", "1")
    done = named.run("log", "publish", code=1)
    assert "witness.example.org: not cosigned size 3" in done.stderr


# -- a witness: its own state, never the ledger named ---------------------------------------


@case("witness vkey")
def _witness_vkey(named: Named) -> None:
    named.run("witness", "vkey")
    made = sorted(p.name for p in named.folder.iterdir())
    assert made == ["sharing-audit-witness.db.witnesskey"]  # beside its own state's file
    (named.folder / made[0]).unlink()


@case("witness serve")
def _witness_serve(named: Named, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **options: None)
    log = named.with_db("log", "vkey").stdout.strip()
    named.run("witness", "serve", "--log", log)
    assert (named.folder / "sharing-audit-witness.db").exists()
    for made in named.folder.iterdir():
        made.unlink()


# -- the desk at the command line ---------------------------------------------------------


@case("incidents list")
def _incidents_list(named: Named) -> None:
    queue = named.run("incidents", "list").stdout
    assert re.search(r"^ +1 │ high", queue, re.M) and re.search(r"^ +3 │ high", queue, re.M), queue


@case("incidents show")
def _incidents_show(named: Named) -> None:
    assert named.run("incidents", "show", "3").stdout.startswith("incident 3: ")


@case("incidents pupils")
def _incidents_pupils(named: Named) -> None:
    """A reveal is a read appended to the named ledger."""
    before = named.entries()
    assert "UPN" in named.run("incidents", "pupils", "1", "--by", "dpo").stdout
    assert named.entries() == before + 1


def _acted(named: Named, *args: str) -> None:
    """An action on incident 1, appended to the named ledger's chain."""
    before = named.entries()
    named.run("incidents", *args)
    assert named.entries() == before + 1


@case("incidents ack")
def _incidents_ack(named: Named) -> None:
    _acted(named, "ack", "1")


ASSESS = ("incidents", "assess", "1", "--risk", "high_risk", "--reasons", "medical notes")


@case("incidents assess")
def _incidents_assess(named: Named) -> None:
    named.with_db("incidents", "ack", "1")
    _acted(named, *ASSESS[1:])


@case("incidents report")
def _incidents_report(named: Named) -> None:
    named.with_db("incidents", "ack", "1")
    named.with_db(*ASSESS)
    _acted(named, "report", "1", "--ico-reference", "IC-123456-A1B2")


@case("incidents notify")
def _incidents_notify(named: Named) -> None:
    named.with_db("incidents", "ack", "1")
    named.with_db(*ASSESS)
    named.with_db("incidents", "report", "1", "--ico-reference", "IC-123456-A1B2")
    _acted(named, "notify", "1")


@case("incidents close")
def _incidents_close(named: Named) -> None:
    named.with_db("incidents", "ack", "1")
    named.with_db("incidents", "assess", "1", "--risk", "no_risk", "--reasons", "sent back")
    _acted(named, "close", "1", "--reason", "agency confirmed deletion")


# -- users and reports ----------------------------------------------------------------------


@case("users add")
def _users_add(named: Named) -> None:
    named.run("users", "add", "Dana Jones", "--role", "dpo")
    assert "Dana Jones" in named.with_db("users", "list").stdout


@case("users revoke")
def _users_revoke(named: Named) -> None:
    named.with_db("users", "add", "Dana Jones", "--role", "dpo")
    named.run("users", "revoke", "Dana Jones")
    assert "20" in named.with_db("users", "list").stdout.split("Dana Jones")[1]  # revoked at


@case("users rotate")
def _users_rotate(named: Named) -> None:
    first = named.with_db("users", "add", "Dana Jones", "--role", "dpo").stdout
    assert named.run("users", "rotate", "Dana Jones").stdout not in ("", first)


@case("users list")
def _users_list(named: Named) -> None:
    named.with_db("users", "add", "Dana Jones", "--role", "dpo")
    assert "Dana Jones" in named.run("users", "list").stdout


@case("pupils erase")
def _pupils_erase(named: Named) -> None:
    """Judged on the named ledger: pupil 1's open incident there refuses it."""
    done = named.run("pupils", "erase", "--upn", upn(1), "--reason", "asked", "--yes", code=1)
    assert "incident 1 concerns the pupil" in done.stderr


@case("report sar")
def _report_sar(named: Named) -> None:
    sar = orjson.loads(named.run("report", "sar", "--pupil", upn(1), "--format", "json").stdout)
    assert sar["entries"] == [1]


@case("report ropa")
def _report_ropa(named: Named) -> None:
    named.run("report", "ropa", "--format", "json")
    assert named.entries() == 4  # the report, recorded as a read


@case("policy what-if")
def _policy_what_if(named: Named) -> None:
    """The replay reads the named ledger's events, and its read is appended there."""
    done = named.run("policy", "what-if", "england-schools", "--format", "jsonl")
    assert orjson.loads(done.stdout.splitlines()[-1])["summary"]["totals"]["replayed"] == 3
    assert named.entries() == 4


@case("policy adopt")
def _policy_adopt(named: Named) -> None:
    done = named.run("policy", "adopt", "england-schools")
    assert named.entries() == 5  # the what-if's read, then the adoption
    assert "entry 5" in done.stdout


@case("notice publish")
def _notice_publish(named: Named) -> None:
    done = named.run("notice", "publish", "--by", "Dana")
    assert "notice published: entry 4" in done.stdout
    assert named.entries() == 4


@case("notice check")
def _notice_check(named: Named) -> None:
    """No notice published in the named ledger: nothing to find against, and the
    comparison recorded as a read."""
    done = named.run("notice", "check", "--format", "json")
    assert '"no_notice": 1' in done.stdout
    assert named.entries() == 4


@case("retention due")
def _retention_due(named: Named) -> None:
    """The listing is a read appended to the named ledger."""
    before = named.entries()
    done = named.run("retention", "due", "--as-of", "2090-01-01")
    assert "recorded in the ledger as entry" in done.stdout
    assert named.entries() == before + 1


# -- the cases, run (after all are registered above) ------------------------------------


def test_every_command_that_takes_db_has_its_case() -> None:
    assert sorted(_commands_taking_db()) == sorted(CASES)


@pytest.mark.parametrize(
    "command",
    [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in sorted(CASES)],
)
def test_without_db_a_command_uses_the_ledger_the_setting_names(
    command: str, named: Named, request: pytest.FixtureRequest
) -> None:
    run = CASES[command]
    wanted = run.__code__.co_varnames[1 : run.__code__.co_argcount]
    run(named, *(request.getfixturevalue(name) for name in wanted))


def _commands_taking_db() -> Iterator[str]:
    def walk(command: Any, path: tuple[str, ...]) -> Iterator[str]:
        subcommands: dict[str, Any] = getattr(command, "commands", {})
        for name, sub in subcommands.items():
            yield from walk(sub, (*path, name))
        if not subcommands and any("--db" in p.opts for p in command.params):
            yield " ".join(path)

    yield from walk(typer.main.get_command(app), ())
