"""Common Transfer Files and census returns as contract events (pipeline.files): what the
file really carries becomes the event's categories, schools become recipients, and
hostile or broken files are refused with an error naming the file and never a pupil."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.files.ctf import GROUPS
from pipeline.files.events import Converted, file_events
from pipeline.files.gias import Gias, read_gias
from pipeline.files.safe_xml import MAX_DEPTH, FileRefused
from pipeline.policy.pack import PackError, Policy, parse_pack
from schemas.decisions import Decision
from tests.factory import left, upn
from tests.mis_files import (
    CENSUS_MODULES,
    CTF_SECTIONS,
    census,
    census_pupil,
    ctf,
    ctf_pupil,
    gias,
    write,
)

runner = CliRunner()
Events = Callable[..., Converted]


@pytest.fixture
def read(tmp_path: Path, policy: Policy) -> Events:
    """The events of a file with these bytes (named as given), through the default pack."""

    def run(data: bytes, name: str = "850200_CTF_8502002_001.xml", **kw: Any) -> Converted:
        schools = kw.pop("schools", Gias())
        return file_events(write(tmp_path, name, data), policy, schools, **kw)

    return run


def only(converted: Converted) -> dict[str, Any]:
    (event,) = converted.events
    return event


# -- a CTF's content is its categories ----------------------------------------------------


@pytest.mark.parametrize("section", sorted(CTF_SECTIONS))
def test_each_ctf_section_with_data_is_shared_as_its_category(read: Events, section: str) -> None:
    xml, category = CTF_SECTIONS[section]
    event = only(read(ctf(ctf_pupil(1, xml))))
    assert event["data"]["categories"] == list(dict.fromkeys(["personal", category]))


def test_a_pupil_with_identifiers_alone_shares_personal_data_only(read: Events) -> None:
    assert only(read(ctf(ctf_pupil(1))))["data"]["categories"] == ["personal"]


@pytest.mark.parametrize(
    "empty",
    [
        "<SENhistory></SENhistory>",
        "<Attendance><YearData>  </YearData></Attendance>",
        "<BasicDetails><MedicalFlag>false</MedicalFlag></BasicDetails>",
        "<BasicDetails><Disabilities><Disability>NONE</Disability></Disabilities></BasicDetails>",
        "<SuppInfo><SuppID>SIMS</SuppID></SuppInfo>",
        "<StageAssessments/>",
    ],
)
def test_an_empty_container_or_a_value_saying_nothing_adds_no_category(
    read: Events, empty: str
) -> None:
    assert only(read(ctf(ctf_pupil(1, empty))))["data"]["categories"] == ["personal"]


def test_a_full_record_carries_every_category_once_in_the_order_met(read: Events) -> None:
    sections = [xml for xml, _ in CTF_SECTIONS.values()]
    event = only(read(ctf(ctf_pupil(1, *sections))))
    expected = list(dict.fromkeys(["personal", *(c for _, c in CTF_SECTIONS.values())]))
    assert event["data"]["categories"] == expected


def test_religion_the_pack_has_no_category_for_is_still_reported_and_noted(read: Events) -> None:
    converted = read(ctf(ctf_pupil(1, CTF_SECTIONS["religion"][0])))
    assert "religion" in only(converted)["data"]["categories"]
    assert any("<Religion>" in note and "'religion'" in note for note in converted.notes)


@pytest.mark.parametrize("sex", ["Gender", "Sex"])
def test_gender_and_sex_are_both_personal_data(read: Events, sex: str) -> None:
    converted = read(ctf(ctf_pupil(1, sex=sex)))
    assert only(converted)["data"]["categories"] == ["personal"] and converted.notes == []


def test_element_case_does_not_matter(read: Events) -> None:
    pupil = ctf_pupil(1, "<basicdetails><ETHNICITY>WBRI</ETHNICITY></basicdetails>")
    event = only(read(ctf(pupil, version_element="CTFVersion")))
    assert event["data"]["categories"] == ["personal", "ethnicity"]
    assert "CTF 19.0" in event["data"]["purpose"]


def test_a_special_category_brings_the_packs_condition_and_none_leaves_it_out(
    read: Events,
) -> None:
    sen = only(read(ctf(ctf_pupil(1, CTF_SECTIONS["sen"][0]))))["data"]
    plain = only(read(ctf(ctf_pupil(2)), name="other.xml"))["data"]
    assert (sen["lawful_basis"], sen["special_condition"], sen["channel"]) == (
        "legal_obligation",
        "9.2.g",
        "s2s",
    )
    assert "special_condition" not in plain


def test_the_channel_can_be_given(read: Events) -> None:
    assert only(read(ctf(ctf_pupil(1)), channel="secure_email"))["data"]["channel"] == (
        "secure_email"
    )


def test_full_and_partial_files_each_give_a_transfer_per_pupil(read: Events) -> None:
    full = read(ctf(ctf_pupil(1), ctf_pupil(2), ctf_pupil(3)))
    partial = read(ctf(ctf_pupil(4), qualifier="partial"), name="partial.xml")
    assert [len(full.events), len(partial.events)] == [3, 1]
    assert "partial" in only(partial)["data"]["purpose"]
    assert {e["type"] for e in full.events} == {"uk.school.pupil.transferred.v1"}


def test_each_pupil_carries_their_upn_and_date_of_birth(read: Events) -> None:
    event = only(read(ctf(ctf_pupil(7, dob="2014-11-30"))))
    assert event["data"]["pupils"] == [{"upn": upn(7), "dob": "2014-11-30"}]


# -- schools, time and ids ----------------------------------------------------------------


def test_the_source_and_destination_are_the_headers_schools(read: Events) -> None:
    event = only(read(ctf(ctf_pupil(1))))
    assert (event["source"], event["data"]["recipient"]) == ("/schools/116234", "school:116512")


def test_a_dfe_number_is_resolved_through_the_gias_extract(read: Events, tmp_path: Path) -> None:
    extract = read_gias(
        str(
            gias(
                tmp_path / "edubasealldata20261130.csv",
                ("116999", "838", "4512", "Ëmily's Academy", "Open"),
                ("100001", "850", "2001", "Westfields Junior School", "Open"),
            )
        )
    )
    destination = "<LEA>838</LEA><Estab>4512</Estab><URN>XXXXXX</URN>"
    source = "<LEA>850</LEA><Estab>2001</Estab>"  # no URN at all
    event = only(read(ctf(ctf_pupil(1), source=source, destination=destination), schools=extract))
    assert (event["source"], event["data"]["recipient"]) == ("/schools/100001", "school:116999")


def test_gias_prefers_the_open_school_of_a_reused_dfe_number(tmp_path: Path) -> None:
    extract = read_gias(
        str(
            gias(
                tmp_path / "gias.csv",
                ("100002", "850", "2002", "Old School", "Closed"),
                ("148000", "850", "2002", "New Academy", "Open"),
                ("100003", "850", "2003", "Older School", "Closed"),
            )
        )
    )
    assert extract.urn("850", "2002") == "148000" and extract.urn("850", "2003") == "100003"


def test_a_file_that_is_not_a_gias_extract_is_refused_naming_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "schools.csv"
    path.write_text("Name,Town\nA,B\n")
    with pytest.raises(FileRefused, match="no column 'URN'"):
        read_gias(str(path))


LAESTAB = "school:laestab"


@pytest.mark.parametrize(
    ("destination", "recipient", "said"),
    [
        (
            "<LEA>838</LEA><Estab>4512</Estab><URN>XXXXXX</URN>",
            "school:laestab-838-4512",
            "838/4512",
        ),
        ("<LEA>838</LEA><Estab>4512</Estab>", f"{LAESTAB}-838-4512", "838/4512"),
        ("<LEA>XXX</LEA><Estab>XXXX</Estab><URN>XXXXXX</URN>", "school:unknown", "XXX/XXXX"),
        ("<LEA>MMM</LEA><Estab>MMMM</Estab>", "school:unknown", "MMM/MMMM"),
        ("", "school:unknown", "?/?"),
    ],
)
def test_a_destination_not_resolved_is_a_recipient_the_contract_treats_as_unknown(
    read: Events, destination: str, recipient: str, said: str
) -> None:
    converted = read(ctf(ctf_pupil(1), destination=destination))
    event = only(converted)
    assert event["data"]["recipient"] == recipient
    assert said in event["data"]["purpose"] and any(said in n for n in converted.notes)


def test_a_source_school_that_cannot_be_told_refuses_the_file(read: Events) -> None:
    with pytest.raises(FileRefused, match=r"SourceSchool.*838/3321.*--gias"):
        read(ctf(ctf_pupil(1), source="<LEA>838</LEA><Estab>3321</Estab><URN>XXXXXX</URN>"))


@pytest.mark.parametrize(
    ("written", "time"),
    [
        ("2026-07-06T10:00:00", "2026-07-06T10:00:00+01:00"),  # British Summer Time
        ("2026-12-07T10:00:00", "2026-12-07T10:00:00+00:00"),
        ("2026-12-07T10:00:00+00:00", "2026-12-07T10:00:00+00:00"),
    ],
)
def test_the_headers_local_time_is_taken_in_england(read: Events, written: str, time: str) -> None:
    assert only(read(ctf(ctf_pupil(1), written=written)))["time"] == time


def test_the_same_file_read_twice_gives_the_same_ids_and_another_file_others(
    read: Events,
) -> None:
    data = ctf(ctf_pupil(1), ctf_pupil(2))
    first, again = read(data), read(data, name="copy.xml")
    other = read(ctf(ctf_pupil(1), ctf_pupil(2), written="2026-07-07T10:00:00"), name="b.xml")
    ids = [e["id"] for e in first.events]
    assert first.events == again.events and len(set(ids)) == 2  # whatever the file's name
    assert set(ids).isdisjoint(e["id"] for e in other.events)
    assert not any(upn(1) in i or upn(2) in i for i in ids)


def test_a_malformed_upn_still_becomes_an_event_which_the_contract_rejects(
    read: Events, decide_all: Callable[..., list[Decision]]
) -> None:
    converted = read(ctf(ctf_pupil(1, the_upn="NOT-A-UPN"), ctf_pupil(2, dob="2015-02-30")))
    bad_upn, bad_dob = decide_all(*converted.events)
    assert (bad_upn.decision, bad_upn.rules) == ("rejected", ("pupil.invalid_upn",))
    assert bad_dob.decision == "rejected" and "dob" in bad_dob.reasons[0]


# -- decided on content alone, given the leaving fact ------------------------------------

LEFT_AT = "2026-07-01T15:00:00+01:00"


def test_a_ctf_within_15_school_days_of_leaving_for_its_destination_is_decided_on_content(
    read: Events, decide_all: Callable[..., list[Decision]]
) -> None:
    left_for = left(upn(1), left_on="2026-07-01", destination="school:116512", time=LEFT_AT)
    sections = [CTF_SECTIONS[s][0] for s in ("ethnicity", "sen", "attendance", "assessment")]
    event = only(read(ctf(ctf_pupil(1, *sections), written="2026-07-20T09:00:00")))
    assert decide_all(left_for, event)[-1].decision == "allowed"
    with_religion = only(read(ctf(ctf_pupil(1, CTF_SECTIONS["religion"][0])), name="r.xml"))
    assert decide_all(left_for, with_religion)[-1].rules == ("category.unknown",)


def test_a_ctf_to_another_school_than_the_pupil_left_for_is_a_breach(
    read: Events, decide_all: Callable[..., list[Decision]]
) -> None:
    left_for = left(upn(1), left_on="2026-07-01", destination="school:116999", time=LEFT_AT)
    event = only(read(ctf(ctf_pupil(1), written="2026-07-03T09:00:00")))
    decision = decide_all(left_for, event)[-1]
    assert (decision.decision, decision.rules) == ("breach", ("transfer.wrong_destination",))


def test_an_unresolved_destination_is_a_breach_when_the_pupil_left_for_a_known_school(
    read: Events, decide_all: Callable[..., list[Decision]]
) -> None:
    left_for = left(upn(1), left_on="2026-07-01", destination="school:116512", time=LEFT_AT)
    event = only(read(ctf(ctf_pupil(1), destination="<LEA>838</LEA><Estab>4512</Estab>")))
    decision = decide_all(left_for, event)[-1]
    assert decision.decision == "breach"
    assert decision.rules == ("recipient.unknown", "transfer.wrong_destination")


# -- census returns -----------------------------------------------------------------------


@pytest.mark.parametrize("module", sorted(CENSUS_MODULES))
def test_each_census_module_with_data_is_shared_as_its_category(read: Events, module: str) -> None:
    xml, category = CENSUS_MODULES[module]
    event = only(read(census(census_pupil(1, xml)), name="850200_SC3_850LL27_001.XML"))
    assert event["data"]["categories"] == list(dict.fromkeys(["personal", category]))


def test_a_census_is_one_event_to_the_dfe_naming_every_pupil_on_and_off_roll(
    read: Events,
) -> None:
    pupils = [census_pupil(n) for n in range(1, 6)] + [census_pupil(9, off_roll=True)]
    event = only(read(census(*pupils), name="sc.xml"))
    assert event["type"] == "uk.school.census.submitted.v1"
    assert (event["source"], event["data"]["recipient"]) == ("/schools/116234", "dfe")
    assert [p["upn"] for p in event["data"]["pupils"]] == [upn(n) for n in (1, 2, 3, 4, 5, 9)]
    assert event["data"]["channel"] == "collect" and event["time"] == "2027-01-20T14:30:00+00:00"
    assert event["id"] == only(read(census(*pupils), name="again.xml"))["id"]


def test_a_census_with_sex_for_gender_reads_the_same(read: Events) -> None:
    converted = read(census(census_pupil(1, sex="Sex")), name="sc.xml")
    assert only(converted)["data"]["categories"] == ["personal"] and converted.notes == []


def test_a_census_module_the_pack_does_not_know_is_reported_not_refused(read: Events) -> None:
    unknown = "<HomeLanguageSurvey><Answer>1</Answer></HomeLanguageSurvey>"
    converted = read(census(census_pupil(1, unknown), census_pupil(2, unknown)), name="sc.xml")
    assert "homelanguagesurvey" in only(converted)["data"]["categories"]
    assert any("<HomeLanguageSurvey> (2 pupils)" in note for note in converted.notes)


def test_another_collection_is_not_a_school_census(read: Events) -> None:
    with pytest.raises(FileRefused, match="'CIN', not 'SC'"):
        read(census(census_pupil(1), collection="CIN"), name="cin.xml")


# -- hostile and broken files -------------------------------------------------------------

BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE CTfile [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
    b"]><CTfile><Header><DocumentName>&c;</DocumentName></Header></CTfile>"
)
EXTERNAL = (
    b'<?xml version="1.0"?><!DOCTYPE CTfile [<!ENTITY leak SYSTEM "file:///etc/passwd">]>'
    b"<CTfile><Header><DocumentName>&leak;</DocumentName></Header></CTfile>"
)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (BOMB, "document type declaration"),
        (EXTERNAL, "document type declaration"),
        (b"<CTfile><Header><DateTime>2026-07-06T10:00:00</Header></CTfile>", "mismatched tag"),
        (ctf(ctf_pupil(1), ctf_pupil(2))[:-60], "truncated"),
        (b"", "truncated"),
        (b"\x00\x01 not xml", "not well-formed"),
        (census(census_pupil(1)), "the root element is <Message>, not <CTfile>"),
        (ctf(ctf_pupil(1), written="yesterday"), "<Header/DateTime> 'yesterday'"),
        (ctf(ctf_pupil(1)).replace(b"<DateTime>2026-07-06T10:00:00</DateTime>", b""), "missing"),
    ],
)
def test_a_hostile_or_broken_file_is_refused_naming_the_file_and_never_a_pupil(
    read: Events, data: bytes, says: str
) -> None:
    with pytest.raises(FileRefused) as refused:
        read(data, name="bad.xml", kind="ctf")
    message = str(refused.value)
    assert "bad.xml" in message and says in message
    assert upn(1) not in message and upn(2) not in message and "Pupil1" not in message


def test_a_truncated_file_says_where_it_stopped(read: Events) -> None:
    data = ctf(ctf_pupil(1), ctf_pupil(2, CTF_SECTIONS["sen"][0]))
    with pytest.raises(FileRefused, match=r"inside <CTfile/CTFpupilData/Pupil.*after record 1"):
        read(data[: data.index(b"<SENneeds>") + 5], name="cut.xml", kind="ctf")


def test_a_file_of_either_kind_is_told_by_its_root(read: Events) -> None:
    assert only(read(census(census_pupil(1)), name="sc.xml"))["data"]["recipient"] == "dfe"
    assert only(read(ctf(ctf_pupil(1)), name="ctf.xml"))["data"]["recipient"] == "school:116512"
    with pytest.raises(FileRefused, match="neither a Common Transfer File"):
        read(b"<html><body/></html>", name="page.xml")


# -- the pack owns the mapping ------------------------------------------------------------


PACKS = Path(__file__).parents[2] / "pipeline" / "packs"


def pack_text(old: str, new: str) -> str:
    """The shipped pack's text with ``old`` replaced by ``new``, as a DPO edits a copy."""
    text = (PACKS / "england-schools.yaml").read_text()
    assert old in text
    return text.replace(old, new)


def test_a_mapping_to_a_category_the_pack_does_not_define_is_a_pack_error() -> None:
    text = pack_text("      StageAssessments: assessment", "      StageAssessments: grades")
    with pytest.raises(PackError, match=r"files\.ctf\.categories\.StageAssessments: 'grades'"):
        parse_pack(text, "mine.yaml")


def test_an_element_mapped_twice_in_two_cases_is_a_pack_error() -> None:
    text = pack_text("      Email: personal\n", "      Email: personal\n      EMAIL: personal\n")
    with pytest.raises(PackError, match=r"files\.ctf\.categories\.EMAIL"):
        parse_pack(text, "mine.yaml")


def test_a_dpo_can_map_religion_and_the_file_then_shares_that_category(
    tmp_path: Path,
) -> None:
    text = pack_text("      SuppID: null\n", "      SuppID: null\n      Religion: ethnicity\n")
    mine = parse_pack(text, "mine.yaml")
    path = write(tmp_path, "a.xml", ctf(ctf_pupil(1, CTF_SECTIONS["religion"][0])))
    converted = file_events(path, mine, Gias())
    assert (
        only(converted)["data"]["categories"] == ["personal", "ethnicity"] and not converted.notes
    )


def test_a_pack_without_a_files_section_is_told_so(tmp_path: Path) -> None:
    text = (PACKS / "england-schools.yaml").read_text().split("\nfiles:\n")[0]
    path = write(tmp_path, "a.xml", ctf(ctf_pupil(1)))
    with pytest.raises(FileRefused, match="has no files section"):
        file_events(path, parse_pack(text, "old.yaml"), Gias())


# -- the command line ---------------------------------------------------------------------


def test_ctf_events_prints_json_lines_and_names_a_refused_file_giving_nothing_of_it(
    tmp_path: Path,
) -> None:
    good = write(tmp_path, "good.xml", ctf(ctf_pupil(1), ctf_pupil(2)))
    bad = write(tmp_path, "bad.xml", BOMB)
    done = runner.invoke(app, ["ctf", "events", str(good), str(bad)])
    assert done.exit_code == 2
    assert len(done.stdout.splitlines()) == 2
    assert "bad.xml: refused" in done.stderr and "1 of 2 files" in done.stderr
    assert "Traceback" not in done.output


def test_census_events_feeds_check(tmp_path: Path) -> None:
    path = write(tmp_path, "sc.xml", census(census_pupil(1, CENSUS_MODULES["sen"][0])))
    events = runner.invoke(app, ["census", "events", str(path)])
    checked = runner.invoke(app, ["check", "-", "-f", "jsonl"], input=events.stdout)
    assert events.exit_code == checked.exit_code == 0, events.output + checked.output
    assert '"decision":"allowed"' in checked.stdout.replace(" ", "")


# -- the element names of real files ------------------------------------------------------

#: The element names of the four anonymised SIMS CTF 19.0 files (full and partial) in
#: TheGryphonSchool/cloudschool-CTF-parser, test/CTFs/*.xml: names only, read with the
#: search tool, not copied (the files are GPL and hold made-up people).
REAL_PUPIL = {
    "UPN",
    "UniqueLearnerNumber",
    "UCI",
    "Surname",
    "Forename",
    "DOB",
    "Gender",
    "BasicDetails",
    "FSMhistory",
    "SENhistory",
    "Address",
    "Phones",
    "Email",
    "Contacts",
    "Attendance",
    "StageAssessments",
    "SchoolHistory",
    "SuppInfo",
}
REAL_BASIC_DETAILS = {
    "FormerUPN",
    "PreferredSurname",
    "PreferredForename",
    "MiddleNames",
    "NCyearActual",
    "Ethnicity",
    "EthnicitySource",
    "Languages",
    "ServiceChild",
    "MedicalFlag",
    "Disabilities",
    "EnrolStatus",
    "SuppInfo",
}
REAL_SUPP_INFO = {
    "SuppID",
    "BirthCertificate",
    "Religion",
    "Language",
    "EnglishAsAdditionalLanguage",
}


def test_every_pupil_element_of_the_real_samples_is_a_group_or_in_the_packs_mapping(
    policy: Policy,
) -> None:
    assert policy.spec.files is not None
    mapped = {name.lower() for name in policy.spec.files.ctf.categories}
    elements = REAL_PUPIL | REAL_BASIC_DETAILS | REAL_SUPP_INFO
    unmapped = {e for e in elements if e.lower() not in mapped | GROUPS}
    assert unmapped == {"Religion"}  # special category data the pack does not define


# -- bounded whatever the file holds ------------------------------------------------------


def test_a_record_nested_thousands_deep_is_refused_naming_the_depth_and_where(
    read: Events,
) -> None:
    deep = "<BasicDetails>" * 5_000 + "x" + "</BasicDetails>" * 5_000
    with pytest.raises(FileRefused) as refused:
        read(ctf(ctf_pupil(1), ctf_pupil(2, deep)), name="deep.xml", kind="ctf")
    message = str(refused.value)
    assert "deep.xml" in message and f"more than {MAX_DEPTH} deep" in message
    assert "inside <CTfile/CTFpupilData/Pupil/BasicDetails/" in message
    assert "after record 1" in message and upn(2) not in message


def test_elements_nested_deep_outside_any_record_are_refused_too(read: Events) -> None:
    deep = b"<a>" * 100_000 + b"</a>" * 100_000
    with pytest.raises(FileRefused, match=f"more than {MAX_DEPTH} deep"):
        read(ctf(ctf_pupil(1)).replace(b"<CTFpupilData>", deep + b"<CTFpupilData>"), kind="ctf")


MIB = 1 << 20
PADDING = 16 * MIB


def _padded(where: str) -> bytes:
    """A CTF of two pupils with 16 MiB of padding put ``where`` (a hostile file's ways of
    making a reader hold more than a record)."""
    pad = {
        "between records": ("</Pupil>", "</Pupil>" + " " * PADDING),
        "before the header": ("<CTfile>", "<CTfile>" + " " * PADDING),
        "inside a text": ("<Surname>Pupil1", "<Surname>Pupil1" + "a" * PADDING),
        "in a comment": ("</Header>", "</Header><!--" + "c" * PADDING + "-->"),
        "in an attribute": ("<Pupil>", f'<Pupil note="{"n" * PADDING}">'),
        "before the root": ("<CTfile>", "<!--" + "c" * PADDING + "--><CTfile>"),
        "as empty elements between records": ("</Pupil>", "</Pupil>" + "<x/>" * (PADDING // 4)),
        "as empty elements in a record": ("</DOB>", "</DOB>" + "<x/>" * (PADDING // 4)),
        "as text between comments": ("<Forename>", "<Forename>" + "t<!---->" * (PADDING // 8)),
    }[where]
    return ctf(ctf_pupil(1), ctf_pupil(2)).decode().replace(*pad, 1).encode()


@pytest.mark.parametrize(
    "where",
    [
        "between records",
        "before the header",
        "inside a text",
        "in a comment",
        "in an attribute",
        "before the root",
        "as empty elements between records",
        "as empty elements in a record",
        "as text between comments",
    ],
)
def test_reading_a_padded_file_holds_a_bounded_amount_of_memory(read: Events, where: str) -> None:
    data = _padded(where)
    tracemalloc.start()
    try:
        read(data, name="padded.xml", kind="ctf")
    except FileRefused as refused:
        assert "padded.xml" in str(refused)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 3 * len(data) and peak < 24 * MIB, f"{peak / MIB:.0f} MiB"


def test_a_text_larger_than_the_bound_is_refused_saying_where(read: Events) -> None:
    with pytest.raises(FileRefused) as refused:
        read(_padded("inside a text"), name="big.xml", kind="ctf")
    message = str(refused.value)
    assert "big.xml" in message and "MiB with no element" in message
    assert "inside <CTfile/CTFpupilData/Pupil/Surname>" in message and "aaaa" not in message


def test_a_record_larger_than_the_bound_is_refused_naming_it(read: Events) -> None:
    with pytest.raises(FileRefused, match=r"big\.xml: record 1 .*larger than"):
        read(_padded("as empty elements in a record"), name="big.xml", kind="ctf")


def test_whitespace_between_and_inside_records_is_read_as_an_mis_indents(read: Events) -> None:
    data = ctf(ctf_pupil(1, CTF_SECTIONS["sen"][0]), ctf_pupil(2)).replace(b"><", b">\n    <")
    converted = read(data, kind="ctf")
    assert [e["data"]["categories"] for e in converted.events] == [
        ["personal", "sen"],
        ["personal"],
    ]


def test_ctf_events_escapes_control_characters_in_the_names_it_prints(tmp_path: Path) -> None:
    name = "a\x1b]0;owned\x07\x1b[2J\u202e.xml"
    bad = write(tmp_path, name, b"<CTfile><Header></CTfile>")
    unmapped = write(tmp_path, "b\x1b[31m.xml", ctf(ctf_pupil(1, CTF_SECTIONS["religion"][0])))
    done = runner.invoke(app, ["ctf", "events", str(bad), str(unmapped)])
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert "a\\x1b]0;owned\\x07\\x1b[2J\\u202e.xml: not well-formed" in done.stderr
    assert "b\\x1b[31m.xml: <Religion>" in done.stderr
    assert not any(c in done.stderr for c in "\x1b\x07\u202e")
