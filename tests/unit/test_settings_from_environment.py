"""A SHARING_AUDIT_ variable set wrong is a one-line mistake at every command, naming the
variable and what is wrong, never its value (it may be a password or a key), and never a
traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("SHARING_AUDIT_WITNESSES", "not json", "SHARING_AUDIT_WITNESSES is not the JSON"),
        ("SHARING_AUDIT_WITNESSES", '[{"url": 1}]', "SHARING_AUDIT_WITNESSES (at 0.vkey)"),
        ("SHARING_AUDIT_PARTITIONS", "four", "SHARING_AUDIT_PARTITIONS: Input should be"),
        ("SHARING_AUDIT_KAFKA_SASL_MECHANISM", "hunter2-secret", "SASL_MECHANISM: Input should"),
    ],
    ids=["not-json", "witness-without-key", "not-a-number", "not-a-mechanism"],
)
def test_a_variable_set_wrong_is_named_in_one_line_without_its_value(
    variable: str, value: str, named: str
) -> None:
    done = runner.invoke(app, ["ledger", "stats"], env={variable: value})
    assert done.exit_code == 2, done.output
    assert named in done.output and "Traceback" not in done.output
    assert value not in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
