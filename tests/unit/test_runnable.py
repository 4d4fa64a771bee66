"""Commands the command line prints for a person to run next (pipeline.cli.runnable): as
the shell that started it can run them, whether or not the environment is activated."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.cli.runnable import PROGRAM, activation, command_line, program

OURS = Path(sys.executable).parent.resolve() / PROGRAM
PLAIN_PATH = "/usr/bin:/bin"


def test_the_program_is_named_alone_when_that_name_on_the_path_is_this_program() -> None:
    assert program(path=f"{PLAIN_PATH}:{OURS.parent}") == PROGRAM


def test_the_program_is_named_by_its_path_when_it_is_not_on_the_path(tmp_path: Path) -> None:
    assert program(path=PLAIN_PATH, cwd=tmp_path) == str(OURS)


def test_another_program_of_that_name_on_the_path_is_not_taken_for_this_one(
    tmp_path: Path,
) -> None:
    other = tmp_path / PROGRAM
    other.write_text("#!/bin/sh\necho another installation\n")
    other.chmod(0o755)
    assert program(path=str(tmp_path), cwd=tmp_path) == str(OURS)


def test_the_path_is_relative_to_the_working_folder_when_the_program_is_under_it() -> None:
    checkout = OURS.parents[2]  # the folder holding .venv/bin/sharing-audit
    relative = OURS.relative_to(checkout)
    assert program(path=PLAIN_PATH, cwd=checkout) == str(relative)


def test_in_its_own_folder_the_program_is_named_so_that_the_shell_does_not_search_the_path() -> (
    None
):
    assert program(path=PLAIN_PATH, cwd=OURS.parent) == f"./{PROGRAM}"


def test_each_argument_is_quoted_where_the_shell_would_split_or_expand_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(OURS.parent))
    said = command_line("serve", "--db", "sqlite:///my ledger.db", "--policy", "$HOME.yaml")
    assert said == "sharing-audit serve --db 'sqlite:///my ledger.db' --policy '$HOME.yaml'"


def test_activating_the_environment_is_offered_only_when_the_program_is_not_on_the_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", PLAIN_PATH)
    monkeypatch.chdir(OURS.parents[2])
    assert activation() == f"source {OURS.parent.relative_to(OURS.parents[2])}/activate"
    monkeypatch.setenv("PATH", f"{OURS.parent}:{PLAIN_PATH}")
    assert activation() is None
