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


def _instant(text: str) -> datetime:
    # The pattern has already checked the RFC 3339 form; this checks the values are real.
    return datetime.fromisoformat(text.upper())


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
        AfterValidator(date.fromisoformat),
        WithJsonSchema({"type": "string", "format": "date"}),
    ]
NonEmptyStr = Annotated[str, Field(min_length=1)]
CategoryList = Annotated[list[NonEmptyStr], Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# A TypedDict rather than a model: a census lists hundreds of pupils, and validating them
# into dicts costs less than half of building a model for each.
class Pupil(TypedDict):
    """A pupil whose data is shared: the UPN (13 characters; a temporary UPN is valid) and,
    optionally, the date of birth (YYYY-MM-DD). Other keys are ignored."""

    upn: str
    dob: NotRequired[Day]


class SharingData(_Model):
    """What was shared, with whom, and on what legal footing."""

    recipient: NonEmptyStr = Field(
        description='"dfe", "la:{3-digit LA code}", "school:{URN}" or an agency id from the policy'
    )
    pupils: list[Pupil] = Field(min_length=1)
    categories: CategoryList
    lawful_basis: LawfulBasis
    special_condition: SpecialCondition | None = None
    consent_ref: NonEmptyStr | None = None
    oldest_record: dict[str, Day] | None = Field(
        default=None, description="per category, the date of the oldest record included"
    )
    channel: Channel
    purpose: Annotated[str, Field(max_length=500)] | None = None


class SinglePupilSharingData(SharingData):
    """Transfers and referrals concern exactly one pupil."""

    pupils: list[Pupil] = Field(min_length=1, max_length=1)


class LeftData(_Model):
    upn: str
    left_on: Day
    destination: Annotated[str, Field(pattern=DESTINATION_PATTERN)]


class ConsentGivenData(_Model):
    upn: str
    consent_ref: NonEmptyStr
    recipients: Annotated[list[NonEmptyStr], Field(min_length=1)]
    categories: CategoryList


class ConsentWithdrawnData(_Model):
    upn: str
    consent_ref: NonEmptyStr


class RecordDestroyedData(_Model):
    upn: str
    categories: CategoryList = Field(description='categories destroyed, ["*"] for the whole record')


class Envelope(_Model):
    """CloudEvents 1.0 attributes, structured JSON mode."""

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
