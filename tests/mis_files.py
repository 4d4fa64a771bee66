"""CTF and School Census files written by the tests themselves, with the element names of
the DfE's specifications as the real, public SIMS samples use them (read, not copied)."""

from __future__ import annotations

from pathlib import Path

from tests.factory import upn

#: One section of a pupil's CTF record with data in it, and the category it carries.
CTF_SECTIONS: dict[str, tuple[str, str]] = {
    "ethnicity": ("<BasicDetails><Ethnicity>WBRI</Ethnicity></BasicDetails>", "ethnicity"),
    "languages": (
        "<BasicDetails><Languages><Type><LanguageType>F</LanguageType>"
        "<Language>ENG</Language></Type></Languages></BasicDetails>",
        "characteristics",
    ),
    "medical_flag": ("<BasicDetails><MedicalFlag>true</MedicalFlag></BasicDetails>", "medical"),
    "disabilities": (
        "<BasicDetails><Disabilities><Disability>HEAR</Disability></Disabilities></BasicDetails>",
        "medical",
    ),
    "service_child": (
        "<BasicDetails><ServiceChild>Y</ServiceChild></BasicDetails>",
        "characteristics",
    ),
    "year_group": (
        "<BasicDetails><NCyearActual>6</NCyearActual><EnrolStatus>C</EnrolStatus></BasicDetails>",
        "personal",
    ),
    "fsm": (
        "<FSMhistory><FSMinstance><FSMstartDate>2024-01-08</FSMstartDate>"
        "<UKcountry>ENG</UKcountry></FSMinstance></FSMhistory>",
        "characteristics",
    ),
    "looked_after": (
        "<LookedAfter><InCare>true</InCare><CareAuthority>850</CareAuthority></LookedAfter>",
        "characteristics",
    ),
    "sen": (
        "<SENhistory><SEN><StartDate>2023-09-04</StartDate><SENprovision>K</SENprovision></SEN>"
        "<SENneeds><SENneed><SENtypeRank>1</SENtypeRank><SENtype>SLCN</SENtype></SENneed>"
        "</SENneeds></SENhistory>",
        "sen",
    ),
    "naw": ("<NAWdetails><SENstatus>S</SENstatus></NAWdetails>", "sen"),
    "address": (
        "<Address><BS7666Address><PAON>1</PAON><Street>High St</Street></BS7666Address>"
        "<PostCode>SO23 8UJ</PostCode></Address>",
        "personal",
    ),
    "phones": (
        "<Phones><Phone><TelephoneType>H</TelephoneType><PhoneNo>01962 000000</PhoneNo>"
        "</Phone></Phones>",
        "personal",
    ),
    "email": ("<Email>home@example.org</Email>", "personal"),
    "contacts": (
        "<Contacts><Contact><Order>1</Order><Surname>Parent</Surname>"
        "<Relationship>PAM</Relationship></Contact></Contacts>",
        "personal",
    ),
    "attendance": (
        "<Attendance><YearData><Year>2025</Year><SessionsPossible>380</SessionsPossible>"
        "<SessionsAttended>370</SessionsAttended></YearData></Attendance>",
        "attendance",
    ),
    "assessment": (
        "<StageAssessments><KeyStage><Stage>KS1</Stage><StageAssessment><Subject>MAT</Subject>"
        "<Result>EXS</Result></StageAssessment></KeyStage></StageAssessments>",
        "assessment",
    ),
    "school_history": (
        "<SchoolHistory><School><URN>116234</URN><EntryDate>2020-09-01</EntryDate></School>"
        "</SchoolHistory>",
        "personal",
    ),
    "religion": (
        "<SuppInfo><SuppID>SIMS</SuppID><Religion>CH</Religion></SuppInfo>",
        "religion",
    ),
}

#: Each census module with data in it, and the category it carries.
CENSUS_MODULES: dict[str, tuple[str, str]] = {
    "ethnicity": (
        "<PupilCharacteristics><Ethnicity>WBRI</Ethnicity></PupilCharacteristics>",
        "ethnicity",
    ),
    "characteristics": (
        "<PupilCharacteristics><FSMeligible>true</FSMeligible><Language>ENG</Language>"
        "</PupilCharacteristics>",
        "characteristics",
    ),
    "status": (
        "<PupilStatus><EnrolStatus>C</EnrolStatus><NCyearActual>5</NCyearActual></PupilStatus>",
        "personal",
    ),
    "sen": (
        "<SpecialEducationalNeeds><SENprovision>K</SENprovision></SpecialEducationalNeeds>",
        "sen",
    ),
    "exclusions": (
        "<Exclusions><TermlyExclusion><Category>SUSP</Category></TermlyExclusion></Exclusions>",
        "exclusions",
    ),
    "home": (
        "<HomeInformation><Address><PostCode>SO23 8UJ</PostCode></Address></HomeInformation>",
        "personal",
    ),
    "attendance": (
        "<Attendance><TermlyAttendance><SessionsPossible>120</SessionsPossible>"
        "</TermlyAttendance></Attendance>",
        "attendance",
    ),
    "travel": ("<ModeOfTravel>CAR</ModeOfTravel>", "travel"),
    "learner_support": (
        "<LearnerSupport><LearnerSupportCode>BSF</LearnerSupportCode></LearnerSupport>",
        "characteristics",
    ),
}


def ctf_pupil(
    serial: int, *sections: str, sex: str = "Gender", dob: str = "2015-03-01", the_upn: str = ""
) -> str:
    """A pupil's record: identifiers, then the given sections (XML)."""
    return (
        f"<Pupil><UPN>{the_upn or upn(serial)}</UPN><Surname>Pupil{serial}</Surname>"
        f"<Forename>Test</Forename><DOB>{dob}</DOB><{sex}>F</{sex}>{''.join(sections)}</Pupil>"
    )


def ctf(
    *pupils: str,
    source: str = "<LEA>850</LEA><Estab>2001</Estab><URN>116234</URN>",
    destination: str = "<LEA>850</LEA><Estab>2002</Estab><URN>116512</URN>",
    qualifier: str = "full",
    written: str = "2026-07-06T10:00:00",
    version_element: str = "CTFversion",
) -> bytes:
    """A Common Transfer File, as SIMS writes them."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<CTfile><Header>'
        "<DocumentName>Common Transfer File</DocumentName>"
        f"<{version_element}>19.0</{version_element}><DateTime>{written}</DateTime>"
        f"<DocumentQualifier>{qualifier}</DocumentQualifier><SupplierID>SIMS</SupplierID>"
        f"<SourceSchool>{source}<SchoolName>Westfields Junior School</SchoolName>"
        f"<AcademicYear>2025</AcademicYear></SourceSchool><DestSchool>{destination}</DestSchool>"
        f"</Header><CTFpupilData>{''.join(pupils)}</CTFpupilData></CTfile>\n"
    ).encode()


def census_pupil(
    serial: int, *modules: str, sex: str = "Gender", off_roll: bool = False, the_upn: str = ""
) -> str:
    tag = "PupilNoLongerOnRoll" if off_roll else "PupilOnRoll"
    leaving = "<LeavingDate>2026-12-18</LeavingDate>" if off_roll else ""
    return (
        f"<{tag}><PupilIdentifiers><UPN>{the_upn or upn(serial)}</UPN>"
        f"<Surname>Pupil{serial}</Surname><Forename>Test</Forename><{sex}>M</{sex}>"
        f"<DOB>2016-05-0{serial % 9 + 1}</DOB></PupilIdentifiers>"
        f"{leaving}{''.join(modules)}</{tag}>"
    )


def census(
    *pupils: str,
    source: str = "<LEA>850</LEA><Estab>2001</Estab><URN>116234</URN>",
    written: str = "2027-01-20T14:30:00",
    collection: str = "SC",
) -> bytes:
    """A School Census return (spring), pupils on roll and no longer on roll as given."""
    on = "".join(p for p in pupils if p.startswith("<PupilOnRoll>"))
    off = "".join(p for p in pupils if p.startswith("<PupilNoLongerOnRoll>"))
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<Message><Header><CollectionDetails>'
        f"<Collection>{collection}</Collection><Term>SPR</Term><Year>2027</Year>"
        "<ReferenceDate>2027-01-21</ReferenceDate></CollectionDetails><Source>"
        f"<SourceLevel>S</SourceLevel>{source}<SoftwareCode>SIMS</SoftwareCode>"
        f"<Release>7.2</Release><SerialNo>001</SerialNo><DateTime>{written}</DateTime>"
        "</Source></Header><School><SchoolName>Westfields Junior School</SchoolName></School>"
        f"<Pupils><PupilsOnRoll>{on}</PupilsOnRoll>"
        f"<PupilsNoLongerOnRoll>{off}</PupilsNoLongerOnRoll></Pupils></Message>\n"
    ).encode()


GIAS_HEADER = (
    '"URN","LA (code)","LA (name)","EstablishmentNumber","EstablishmentName",'
    '"EstablishmentStatus (name)","PreviousLA (code)","PreviousEstablishmentNumber"'
)


def gias(path: Path, *rows: tuple[str, str, str, str, str]) -> Path:
    """A GIAS extract as the DfE publishes it (ISO-8859-1): rows of (URN, LA, estab,
    name, status)."""
    lines = [GIAS_HEADER] + [
        f'"{urn}","{la}","Hampshire","{estab}","{name}","{status}","",""'
        for urn, la, estab, name, status in rows
    ]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("iso-8859-1"))
    return path


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path
