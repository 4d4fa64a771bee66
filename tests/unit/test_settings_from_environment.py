"""A SHARING_AUDIT_ variable set wrong is a one-line mistake at every command, naming the
variable and what is wrong, never its value (it may be a password or a key), and never a
traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.settings import Settings

runner = CliRunner()


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("SHARING_AUDIT_WITNESSES", "not json", "SHARING_AUDIT_WITNESSES is not the JSON"),
        ("SHARING_AUDIT_WITNESSES", '[{"url": 1}]', "SHARING_AUDIT_WITNESSES (at 0.vkey)"),
        ("SHARING_AUDIT_PARTITIONS", "four", "SHARING_AUDIT_PARTITIONS: Input should be"),
        ("SHARING_AUDIT_KAFKA_SASL_MECHANISM", "hunter2-secret", "SASL_MECHANISM: Input should"),
        ("SHARING_AUDIT_LOG_LEVEL", "s3cr3t", "SHARING_AUDIT_LOG_LEVEL: Value error, a log level"),
    ],
    ids=["not-json", "witness-without-key", "not-a-number", "not-a-mechanism", "not-a-level"],
)
def test_a_variable_set_wrong_is_named_in_one_line_without_its_value(
    variable: str, value: str, named: str
) -> None:
    done = runner.invoke(app, ["ledger", "stats"], env={variable: value})
    assert done.exit_code == 2, done.output
    assert named in done.output and "Traceback" not in done.output
    assert value not in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)


def test_a_log_level_is_taken_in_any_case() -> None:
    assert Settings(log_level="debug").log_level == "DEBUG"


def test_a_commands_help_is_shown_whatever_the_environment_holds() -> None:
    """The group's check of the settings runs before a command's own options are read:
    asking a command for its help must not need a good environment."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "ledger", "verify", "--help"],
        env={"SHARING_AUDIT_SMTP_PORT": "x", "PATH": "/usr/bin:/bin", "COLUMNS": "100"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and "--witness" in done.stdout
