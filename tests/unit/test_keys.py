"""Verifier keys given on the command line (pipeline.cli.keys): every option that takes
one takes the key's line itself or a file holding it, and says plainly, naming the option,
when what it was given is neither."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipeline.cli.keys import log_key, witness_key
from pipeline.cli.main import app
from tests.unit.test_auditor import LOG, WITNESS, cosigned, signed
from tests.unit.test_transparency import leaves_of

runner = CliRunner()


def test_the_keys_line_itself_is_taken() -> None:
    assert log_key(LOG.verifier.vkey(), "--vkey") == LOG.verifier


def test_a_file_holding_the_key_is_read(tmp_path: Path) -> None:
    (tmp_path / "log.vkey").write_text(LOG.verifier.vkey() + "\n")  # as log vkey > log.vkey
    assert log_key(str(tmp_path / "log.vkey"), "--vkey") == LOG.verifier


def test_a_witness_key_is_taken_from_its_text_or_a_file_alike(tmp_path: Path) -> None:
    (tmp_path / "w1.vkey").write_text(WITNESS.verifier.vkey())
    from_file = witness_key(str(tmp_path / "w1.vkey"), "--witness")
    assert from_file == witness_key(WITNESS.verifier.vkey(), "--witness") == WITNESS.verifier


def test_what_is_neither_a_key_nor_a_file_is_named_with_its_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(typer.Exit) as stopped:
        log_key("logs.vkey", "--vkey")
    assert stopped.value.exit_code == 2
    said = capsys.readouterr().err
    assert said == (
        "sharing-audit: --vkey logs.vkey: not a file, nor a verifier key itself (a verifier "
        "key is NAME+KEYID+KEY)\n"
    )


def test_a_file_holding_no_key_is_named_with_its_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.vkey").write_text("not a key\n")
    with pytest.raises(typer.Exit):
        witness_key(str(tmp_path / "bad.vkey"), "--witness")
    assert f"--witness {tmp_path}/bad.vkey: a verifier key is NAME+KEYID+KEY" in (
        capsys.readouterr().err
    )


def test_a_witness_key_given_for_the_logs_is_refused_saying_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(typer.Exit):
        log_key(WITNESS.verifier.vkey(), "--log")
    assert capsys.readouterr().err == (
        "sharing-audit: --log: the log's verifier key is a witness's cosignature key, not a log's\n"
    )


def test_audit_verify_takes_the_logs_key_as_text_and_a_witnesss_from_a_file(
    tmp_path: Path,
) -> None:
    """The mismatch the issue met: --vkey took a file and --witness a key's text."""
    (tmp_path / "checkpoint").write_bytes(cosigned(signed(leaves_of(4)), WITNESS))
    (tmp_path / "w1.vkey").write_text(WITNESS.verifier.vkey() + "\n")
    args = ["audit", "verify", str(tmp_path / "checkpoint"), "--vkey", LOG.verifier.vkey()]
    args += ["--state", str(tmp_path / "state"), "--witness", str(tmp_path / "w1.vkey")]
    done = runner.invoke(app, [*args, "--quorum", "1"])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("accepted: example.org/sharing-audit at size 4")
