"""Event contract v1 as pydantic models.

These models *are* the public interface MIS vendors code against: the JSON Schema files
under ``schemas/json/`` are generated from them, and the decision engine validates every
incoming event with them. Anything the contract leaves open (unknown envelope attributes,
unknown fields inside ``data``) is accepted and ignored, so vendors can add fields without
breaking older pipelines.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Literal, NotRequired

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    WithJsonSchema,
)
from typing_extensions import TypedDict

CONTRACT_VERSION = "v1"

CENSUS = "uk.school.census.submitted.v1"
TRANSFER = "uk.school.pupil.transferred.v1"
REFERRAL = "uk.school.pupil.referred.v1"
LEFT = "uk.school.pupil.left.v1"
CONSENT_GIVEN = "uk.school.consent.given.v1"
CONSENT_WITHDRAWN = "uk.school.consent.withdrawn.v1"
RECORD_DESTROYED = "uk.school.record.destroyed.v1"

SHARING_TYPES = (CENSUS, TRANSFER, REFERRAL)
LIFECYCLE_TYPES = (LEFT, CONSENT_GIVEN, CONSENT_WITHDRAWN, RECORD_DESTROYED)
EVENT_TYPES = SHARING_TYPES + LIFECYCLE_TYPES

#: The short name a policy pack uses for each sharing event type.
SHARING_KIND = {CENSUS: "census", TRANSFER: "transfer", REFERRAL: "referral"}

#: Where each event type goes on Kafka unless configured otherwise.
DEFAULT_TOPIC = {
    CENSUS: "sharing.census",
    TRANSFER: "sharing.transfer",
    REFERRAL: "sharing.referral",
    **{t: "pupil.lifecycle" for t in LIFECYCLE_TYPES},
}

EVENT_ID_PATTERN = r"^[\x20-\x7e]{1,128}$"
SOURCE_PATTERN = r"^/schools/[0-9]{6}$"
SCHOOL_RECIPIENT_PATTERN = r"^school:[0-9]{6}$"

RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
DESTINATION_PATTERN = r"^(school:[0-9]{6}|unknown)$"
#: Who receives data: lowercase letters, digits and ``:._-`` only, so that no recipient
#: can carry spaces, control characters or markup into a header, a page or a terminal.
RECIPIENT_PATTERN = r"^[a-z0-9:._-]{1,64}$"

# Bounds on what one event may hold (contract clarification of 2026-11-30): generous for
# real data (the largest schools in England have under 4,000 pupils), small enough that
# no single record can make an alert, a notice or a page that cannot be delivered.
#: The most pupils one census may name.
MAX_PUPILS = 10_000
#: The most names in a list of categories or recipients, and keys in ``oldest_record``.
MAX_NAMES = 64
#: The longest name of a category, and the longest ``upn`` string (a UPN has 13
#: characters; anything else up to this length is ``pupil.invalid_upn``).
MAX_NAME_LENGTH = 64
#: The longest ``consent_ref``.
MAX_REF_LENGTH = 128
#: The deepest nesting of arrays and objects in a whole event, unknown attributes included.
MAX_DEPTH = 32


class LawfulBasis(StrEnum):
    """UK GDPR Art 6(1) lawful bases."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTERESTS = "legitimate_interests"


class SpecialCondition(StrEnum):
    """UK GDPR Art 9(2) conditions for processing special category data."""

    EXPLICIT_CONSENT = "9.2.a"
    EMPLOYMENT_SOCIAL_PROTECTION = "9.2.b"
    VITAL_INTERESTS = "9.2.c"
    SUBSTANTIAL_PUBLIC_INTEREST = "9.2.g"
    HEALTH_SOCIAL_CARE = "9.2.h"
    ARCHIVING_RESEARCH = "9.2.j"


class Channel(StrEnum):
    """How the data physically left the school."""

    S2S = "s2s"
    COLLECT = "collect"
    SECURE_EMAIL = "secure_email"
    EMAIL = "email"
    POST = "post"
    PORTAL = "portal"
    IN_PERSON = "in_person"


#: The years a time or a date may fall in: wide enough for any pupil's record, narrow
#: enough that no rule's date arithmetic (retention from birth, school days after
#: leaving) can leave the calendar.
YEARS = (1900, 2999)


def _in_years(day: date) -> None:
    if not YEARS[0] <= day.year <= YEARS[1]:
        raise ValueError(f"must fall between the years {YEARS[0]} and {YEARS[1]}")


def _instant(text: str) -> datetime:
    # The pattern has already checked the RFC 3339 form; this checks the values are real.
    moment = datetime.fromisoformat(text.upper())
    _in_years(moment)
    return moment


def _day(text: str) -> date:
    day = date.fromisoformat(text)
    _in_years(day)
    return day


# Patterns checked in pydantic-core, then the value parsed: much faster than a Python
# "before" validator per pupil, and stricter than pydantic's own date and datetime parsing
# (which takes Unix timestamps and ISO forms the contract does not allow).
if TYPE_CHECKING:  # what the validated fields hold
    Timestamp = datetime
    Day = date
else:
    Timestamp = Annotated[
        str,
        Field(pattern=RFC3339_PATTERN),
        AfterValidator(_instant),
        WithJsonSchema({"type": "string", "format": "date-time"}),
    ]
    Day = Annotated[
        str,
        Field(pattern=DATE_PATTERN),
        AfterValidator(_day),
        WithJsonSchema({"type": "string", "format": "date"}),
    ]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
Ref = Annotated[str, Field(min_length=1, max_length=MAX_REF_LENGTH)]
Upn = Annotated[str, Field(max_length=MAX_NAME_LENGTH)]
Recipient = Annotated[str, Field(pattern=RECIPIENT_PATTERN)]
CategoryList = Annotated[list[Name], Field(min_length=1, max_length=MAX_NAMES)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# A TypedDict rather than a model: a census lists hundreds of pupils, and validating them
# into dicts costs less than half of building a model for each.
class Pupil(TypedDict):
    """A pupil whose data is shared: the UPN (13 characters; a temporary UPN is valid) and,
    optionally, the date of birth (YYYY-MM-DD). Other keys are ignored."""

    upn: Upn
    dob: NotRequired[Day]


class SharingData(_Model):
    """What was shared, with whom, and on what legal footing."""

    recipient: Recipient = Field(
        description='"dfe", "la:{3-digit LA code}", "school:{URN}" or an agency id from the policy'
    )
    pupils: list[Pupil] = Field(min_length=1, max_length=MAX_PUPILS)
    categories: CategoryList
    lawful_basis: LawfulBasis
    special_condition: SpecialCondition | None = None
    consent_ref: Ref | None = None
    oldest_record: Annotated[dict[Name, Day], Field(max_length=MAX_NAMES)] | None = Field(
        default=None, description="per category, the date of the oldest record included"
    )
    channel: Channel
    purpose: Annotated[str, Field(max_length=500)] | None = None


class SinglePupilSharingData(SharingData):
    """Transfers and referrals concern exactly one pupil."""

    pupils: list[Pupil] = Field(min_length=1, max_length=1)


class LeftData(_Model):
    upn: Upn
    left_on: Day
    destination: Annotated[str, Field(pattern=DESTINATION_PATTERN)]


class ConsentGivenData(_Model):
    upn: Upn
    consent_ref: Ref
    recipients: Annotated[list[Recipient], Field(min_length=1, max_length=MAX_NAMES)]
    categories: CategoryList


class ConsentWithdrawnData(_Model):
    upn: Upn
    consent_ref: Ref


class RecordDestroyedData(_Model):
    upn: Upn
    categories: CategoryList = Field(description='categories destroyed, ["*"] for the whole record')


class Envelope(_Model):
    """CloudEvents 1.0 attributes, structured JSON mode."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        json_schema_extra={
            "x-maxDepth": MAX_DEPTH,
            "$comment": (
                f"x-maxDepth: arrays and objects nest at most {MAX_DEPTH} deep in the whole "
                "event, unknown attributes included; deeper is event.invalid"
            ),
        },
    )

    specversion: Literal["1.0"]
    id: Annotated[str, Field(pattern=EVENT_ID_PATTERN)]
    source: Annotated[str, Field(pattern=SOURCE_PATTERN)]
    time: Timestamp
    datacontenttype: Literal["application/json"] | None = None

    @property
    def urn(self) -> str:
        return self.source.rsplit("/", 1)[1]


class CensusSubmitted(Envelope):
    """A census return: one or more pupils to the DfE or the local authority."""

    type: Literal["uk.school.census.submitted.v1"]
    data: SharingData


class PupilTransferred(Envelope):
    """A pupil's record sent to the school the pupil moves to."""

    type: Literal["uk.school.pupil.transferred.v1"]
    data: SinglePupilSharingData


class PupilReferred(Envelope):
    """A referral of one pupil to an agency or the local authority."""

    type: Literal["uk.school.pupil.referred.v1"]
    data: SinglePupilSharingData


class PupilLeft(Envelope):
    """The pupil left the school; the destination is where the record must go."""

    type: Literal["uk.school.pupil.left.v1"]
    data: LeftData


class ConsentGiven(Envelope):
    type: Literal["uk.school.consent.given.v1"]
    data: ConsentGivenData


class ConsentWithdrawn(Envelope):
    type: Literal["uk.school.consent.withdrawn.v1"]
    data: ConsentWithdrawnData


class RecordDestroyed(Envelope):
    type: Literal["uk.school.record.destroyed.v1"]
    data: RecordDestroyedData


SharingEvent = CensusSubmitted | PupilTransferred | PupilReferred
LifecycleEvent = PupilLeft | ConsentGiven | ConsentWithdrawn | RecordDestroyed
Event = SharingEvent | LifecycleEvent

MODEL_FOR_TYPE: dict[str, type[Envelope]] = {
    CENSUS: CensusSubmitted,
    TRANSFER: PupilTransferred,
    REFERRAL: PupilReferred,
    LEFT: PupilLeft,
    CONSENT_GIVEN: ConsentGiven,
    CONSENT_WITHDRAWN: ConsentWithdrawn,
    RECORD_DESTROYED: RecordDestroyed,
}

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Annotated[Event, Field(discriminator="type")])


#: For ``isinstance``: sharing events carry pupil data out of the school.
SHARING_MODELS = (CensusSubmitted, PupilTransferred, PupilReferred)
#: For ``isinstance``: lifecycle events record facts the checks depend on.
LIFECYCLE_MODELS = (PupilLeft, ConsentGiven, ConsentWithdrawn, RecordDestroyed)
