"""What ``sharing-audit watch`` says (pipeline.cli.files): a banner as it starts, then one
line per file, its events counted in words."""

from __future__ import annotations

from pathlib import Path

from pipeline.cli.files import banner, outcome_line
from pipeline.files.events import Converted
from pipeline.files.watch import FolderWatcher, Outcome


def _watcher(folder: Path, receipts: bool = True, settle: float = 5.0) -> FolderWatcher:
    return FolderWatcher(
        folder, lambda stream, name: Converted([]), lambda r, k: {}, settle, receipts=receipts
    )


def test_the_banner_says_what_folder_is_watched_for_what_and_where_files_go(
    tmp_path: Path,
) -> None:
    said = banner(_watcher(tmp_path), "127.0.0.1:9092", once=False)
    first, second = said.splitlines()
    assert first == (
        f"watching {tmp_path}/ for *.xml (Common Transfer Files and census returns), each read "
        "once unchanged for 5 s; anything else there is left alone"
    )
    assert f"each file's events go to 127.0.0.1:9092, then the file to {tmp_path}/done/" in second
    assert f"({tmp_path}/done/NAME.receipts.jsonl)" in second
    assert f"a file that cannot be read goes to {tmp_path}/rejected/ beside a .why" in second
    assert second.endswith("; Ctrl-C stops it")


def test_waiting_for_the_broker_alone_and_once_the_banner_says_so(tmp_path: Path) -> None:
    said = banner(_watcher(tmp_path, receipts=False, settle=0), "kafka:9092", once=True)
    assert "each read at once;" in said
    assert "once the broker took each of its events (no receipts kept)" in said
    assert said.endswith("; it reads what is there now, then stops")


def test_a_done_file_counts_its_events_in_words() -> None:
    assert outcome_line(Outcome("a.xml", "done", 1)) == "done: a.xml: 1 event"
    assert outcome_line(Outcome("b.xml", "done", 2)) == "done: b.xml: 2 events"


def test_a_rejected_file_is_named_once_in_its_line() -> None:
    why = "exports/bad.xml: not well-formed XML at line 1, column 18 (mismatched tag)"
    assert outcome_line(Outcome("bad.xml", "rejected", why=why)) == (
        "rejected: bad.xml: not well-formed XML at line 1, column 18 (mismatched tag)"
    )


def test_a_files_name_in_its_line_has_its_control_characters_escaped() -> None:
    name = "cut\x1b[2J.xml"
    line = outcome_line(Outcome(name, "rejected", why=f"exports/{name}: not well-formed"))
    assert line == "rejected: cut\\x1b[2J.xml: not well-formed"
