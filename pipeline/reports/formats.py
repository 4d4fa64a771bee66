"""How entries and reports are written out: CSV, JSON Lines and printable HTML.

One writer per format, shared by the API, the pages and the command line, so the same
question gets the same bytes whichever way it was asked. Entry streams are written a
chunk at a time: an export of a year never sits in memory whole.

CSV is for people opening it in a spreadsheet, so a text cell that a spreadsheet would
run as a formula (starting ``=``, ``+``, ``-`` or ``@``) is prefixed with ``'``. JSON Lines
is the exact form, with the ledger's own field names: use it to recompute hashes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape

from pipeline.ledger.reading.queries import ENTRY_COLUMNS
from pipeline.policy.notice import notice_document, notice_title
from pipeline.shown import install

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CHUNK = 500

html = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


install(html)


def cell(value: Any) -> Any:
    """A value as a spreadsheet-safe CSV cell: lists and objects as JSON."""
    if isinstance(value, list | dict):
        value = orjson.dumps(value).decode()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """CSV text, header first, in chunks of a few hundred rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for n, row in enumerate(rows, 1):
        writer.writerow([cell(v) for v in row])
        if n % _CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def entries_csv(entries: Iterable[dict[str, Any]]) -> Iterator[str]:
    return csv_chunks(ENTRY_COLUMNS, ([e[c] for c in ENTRY_COLUMNS] for e in entries))


def entries_jsonl(entries: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """One JSON object per line, in chunks."""
    chunk: list[bytes] = []
    for entry in entries:
        chunk.append(orjson.dumps(entry) + b"\n")
        if len(chunk) == _CHUNK:
            yield b"".join(chunk)
            chunk = []
    yield b"".join(chunk)


SAR_COLUMNS = (
    "section",
    "seq",
    "occurred_at",
    "event_type",
    "recipient",
    "recipient_name",
    "categories",
    "lawful_basis",
    "special_condition",
    "gateway",
    "channel",
    "decision",
    "rules",
    "reasons",
    "event_id",
    "entries",
    "at",
    "action",
    "role",
    "via",
    "upn",
    "dob",
)


def _listed(value: Any) -> Any:
    """A list as "a; b; c" for a report read by people (entry exports keep JSON)."""
    return "; ".join(str(v) for v in value) if isinstance(value, list) else value


def sar_csv(report: dict[str, Any]) -> str:
    """The subject-access report as one CSV table, a row per item, ``section`` first; the
    first row (section ``pupil``) says whose report it is."""
    pupil = ["pupil", *(report["pupil"].get(c) for c in SAR_COLUMNS[1:])]
    rows = [pupil] + [
        [section, *(_listed(item.get(c)) for c in SAR_COLUMNS[1:])]
        for section in ("disclosures", "lifecycle", "rejected", "accesses")
        for item in report[section]
    ]
    return "".join(csv_chunks(SAR_COLUMNS, rows))


ROPA_COLUMNS = (
    "school",
    "recipient",
    "recipient_name",
    "event_type",
    "gateway",
    "purpose",
    "categories",
    "lawful_bases",
    "special_conditions",
    "channels",
    "recipients",
    "events",
    "pupils",
    "allowed",
    "review",
    "breach",
    "rejected",
    "differences",
)


def ropa_csv(report: dict[str, Any]) -> str:
    """The record of processing as CSV, a row per recipient and event type."""
    rows = ([_listed(row[c]) for c in ROPA_COLUMNS] for row in report["rows"])
    return "".join(csv_chunks(ROPA_COLUMNS, rows))


def sar_html(report: dict[str, Any], **context: Any) -> str:
    return html.get_template("sar.html").render(r=report, **context)


def ropa_html(report: dict[str, Any], **context: Any) -> str:
    return html.get_template("ropa.html").render(r=report, **context)


WHAT_IF_COLUMNS = (
    "seq",
    "event_id",
    "event_type",
    "occurred_at",
    "school",
    "recipient",
    "pupils",
    "from",
    "to",
    "gained",
    "lost",
    "from_reasons",
    "to_reasons",
)


def what_if_csv(report: dict[str, Any]) -> str:
    """The events a candidate pack would decide differently, a row each (pupils by
    pseudonym)."""
    rows = (
        [
            *(_listed(change[c]) for c in WHAT_IF_COLUMNS[:7]),
            change["from"]["decision"],
            change["to"]["decision"],
            _listed(change["gained"]),
            _listed(change["lost"]),
            _listed(change["from"]["reasons"]),
            _listed(change["to"]["reasons"]),
        ]
        for change in report["changes"]
    )
    return "".join(csv_chunks(WHAT_IF_COLUMNS, rows))


def what_if_html(report: dict[str, Any], **context: Any) -> str:
    return html.get_template("whatif.html").render(r=report, **context)


def what_if_body_html(report: dict[str, Any], **context: Any) -> str:
    """The what-if report without its page, for the desk's policy page to hold."""
    return html.get_template("whatif_body.html").render(r=report, **context)


PACK_DIFFERENCE_COLUMNS = ("section", "item", "field", "change", "old", "new")


def pack_differences_csv(differences: Iterable[Any]) -> str:
    """Two packs' differences, a row each (a list as "a; b")."""
    rows = ([_listed(d.as_dict()[c]) for c in PACK_DIFFERENCE_COLUMNS] for d in differences)
    return "".join(csv_chunks(PACK_DIFFERENCE_COLUMNS, rows))


NOTICE_CHECK_COLUMNS = (
    "school",
    "finding",
    "recipient",
    "name",
    "categories",
    "events",
    "first",
    "last",
)


def notice_check_csv(report: dict[str, Any]) -> str:
    """The notice against practice as CSV, a row per finding: a recipient or the data
    shared that the notice did not name, a recipient it names that was sent nothing."""
    rows = []
    for s in report["schools"]:
        for finding, key in (
            ("recipient not in the notice", "unnamed_recipients"),
            ("purpose not in the notice", "unnamed_purposes"),
            ("data not in the notice", "unnamed_categories"),
            ("named but sent nothing", "unused_recipients"),
        ):
            rows += [
                [s["school"], finding, *(_listed(u.get(c)) for c in NOTICE_CHECK_COLUMNS[2:])]
                for u in s[key]
            ]
    return "".join(csv_chunks(NOTICE_CHECK_COLUMNS, rows))


def notice_check_html(report: dict[str, Any], **context: Any) -> str:
    return html.get_template("notice_check.html").render(r=report, **context)


class ReportFormat(StrEnum):
    json = "json"
    csv = "csv"
    html = "html"


_RENDERERS = {
    "subject-access": (sar_csv, sar_html),
    "record-of-processing": (ropa_csv, ropa_html),
    "notice-check": (notice_check_csv, notice_check_html),
}


def rendered(
    report: dict[str, Any], kind: str, form: ReportFormat, back: str | None = None
) -> tuple[bytes, str]:
    """A report (``kind``: subject-access or record-of-processing) in ``form``, and its
    media type. ``back``: where the printable page's "Back" link goes, if anywhere."""
    to_csv, to_html = _RENDERERS[kind]
    if form is ReportFormat.csv:
        return to_csv(report).encode(), "text/csv; charset=utf-8"
    if form is ReportFormat.html:
        return to_html(report, back=back).encode(), "text/html; charset=utf-8"
    return orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n", "application/json"


def notice_html(says: dict[str, Any], made_on: date, back: str | None = None) -> str:
    """The privacy notice as a printable page: its sections as :mod:`pipeline.policy.notice`
    makes them, laid out here without a word added."""
    return html.get_template("notice.html").render(
        title=notice_title(says), sections=notice_document(says, made_on), back=back
    )
