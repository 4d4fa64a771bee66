"""The auditors' reads on both databases: the same questions, the same answers, on SQLite
and on PostgreSQL."""

from __future__ import annotations

import pytest

from pipeline.ledger.reading.queries import Filters, count, entries
from pipeline.ledger.reading.reads import Requester, export, readers_of, search
from pipeline.policy.pack import Policy
from pipeline.reports.ropa import audited_ropa
from pipeline.reports.sar import audited_sar
from tests.integration.year import Year, ledger_of_year

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a year's ledger for each test
AUDITOR = Requester("ann", "auditor", "api")


@pytest.fixture
def year(db_url: str, policy: Policy) -> Year:
    return ledger_of_year(db_url, policy, pupils=200)


def test_a_category_search_matches_the_whole_name_only(year: Year) -> None:
    page = search(year.ledger, AUDITOR, Filters(category="sen"), limit=500)
    assert page.entries and all("sen" in e.categories for e in page.entries)
    assert search(year.ledger, AUDITOR, Filters(category="se"), limit=10).entries == []
    assert search(year.ledger, AUDITOR, Filters(category="s_n"), limit=10).entries == []


def test_an_export_is_found_among_the_readers_of_every_pupil_it_held(year: Year) -> None:
    upn = year.upns()[0]
    total, found = export(year.ledger, AUDITOR, Filters(), "csv")
    assert total == len(list(found))
    with year.ledger.engine.connect() as connection:
        readers = readers_of(connection, year.pseudonym(upn))
    assert [(r.details or {})["action"] for r in readers] == ["export"]


def test_a_subject_access_report_covers_the_pupils_entries(year: Year, policy: Policy) -> None:
    upn = year.upns()[5]
    report = audited_sar(year.ledger, AUDITOR, year.pseudonym(upn), policy)
    assert report is not None
    with year.ledger.engine.connect() as connection:
        naming = [e.seq for e in entries(connection, Filters(pupil_key=year.pseudonym(upn)))]
    assert report["entries"] == [seq for seq in naming if seq <= report["as_of"]]
    assert report["pupil"]["upn"] == upn


def test_the_record_of_processing_counts_every_sharing_event(year: Year, policy: Policy) -> None:
    report = audited_ropa(year.ledger, AUDITOR, policy, None, None)
    assert report is not None
    with year.ledger.engine.connect() as connection:
        decided = sum(
            count(connection, Filters(kind="decision", event_type=t))
            for t in (
                "uk.school.census.submitted.v1",
                "uk.school.pupil.transferred.v1",
                "uk.school.pupil.referred.v1",
            )
        )
    # records too malformed to name a recipient are counted apart from the recipients
    assert report["totals"]["events"] + report["totals"]["unreadable"] == decided > 0


def test_a_limited_export_records_only_what_it_returned(year: Year) -> None:
    total, found = export(
        year.ledger, AUDITOR, Filters(event_type="uk.school.pupil.referred.v1", limit=7), "jsonl"
    )
    returned = list(found)
    assert total == len(returned) == 7
    with year.ledger.engine.connect() as connection:
        read = list(entries(connection, Filters(kind="read")))[-1].details or {}
    assert (read["returned"], read["through_seq"]) == (7, returned[-1]["seq"])
