"""Counts in words (pipeline.plural)."""

from __future__ import annotations

from pipeline.plural import counted


def test_one_takes_the_singular() -> None:
    assert counted(1, "event") == "1 event"


def test_none_and_many_take_the_plural() -> None:
    assert (counted(0, "event"), counted(2, "event")) == ("0 events", "2 events")


def test_an_irregular_plural_is_given() -> None:
    assert counted(3, "entry", "entries") == "3 entries"


def test_thousands_are_set_apart_by_commas() -> None:
    assert counted(1204, "event") == "1,204 events"
