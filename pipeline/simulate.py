"""A realistic school year of events, with the true decision of each known by construction.

Used to demonstrate the pipeline, to benchmark it, and as an oracle in tests: every event
is built either clean (permitted by the england-schools pack, with margins far from any
boundary) or with exactly one injected violation, so its expected decision does not come
from the engine it is used to test. Late facts (a consent withdrawal timed before a
referral but emitted after it) and redeliveries are included, as they happen in practice.
Deterministic for a given seed. No I/O.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from stdnum.gb import upn as stdnum_upn

from pipeline.schooltime import at_school
from schemas.events import (
    CENSUS,
    CONSENT_GIVEN,
    CONSENT_WITHDRAWN,
    LEFT,
    RECORD_DESTROYED,
    REFERRAL,
    TRANSFER,
)

YEAR_START = date(2025, 9, 1)
YEAR_END = date(2026, 7, 22)
CENSUS_DAYS = (date(2025, 10, 2), date(2026, 1, 15), date(2026, 5, 21))
CENSUS_CATEGORIES = [
    "personal",
    "characteristics",
    "attendance",
    "exclusions",
    "assessment",
    "travel",
]

#: Rules the simulator injects, each giving the decision named.
INJECTED = {
    "recipient.unknown": "review",
    "recipient.not_permitted": "breach",
    "category.unknown": "review",
    "category.not_permitted": "breach",
    "basis.not_permitted": "breach",
    "special.no_condition": "breach",
    "consent.missing": "breach",
    "consent.withdrawn": "breach",
    "transfer.no_destination": "review",
    "transfer.wrong_destination": "breach",
    "transfer.late": "review",
    "retention.expired": "breach",
    "record.destroyed": "breach",
    "channel.not_permitted": "breach",
    "event.invalid": "rejected",
    "pupil.invalid_upn": "rejected",
}


@dataclass(frozen=True, slots=True)
class Expected:
    """The true final decision of one emitted line."""

    event_id: str | None
    decision: str
    rules: tuple[str, ...]


@dataclass(slots=True)
class Line:
    """One emitted event, where it sits in time, and what its decision must be."""

    at: datetime
    order: int
    event: dict[str, Any]
    expected: Expected
    redelivery: bool = False


@dataclass(slots=True)
class _Pupil:
    upn: str
    urn: str
    dob: date
    sen: bool
    destroyed: set[str] = field(default_factory=set)
    left_on: date | None = None
    #: The day the school recorded as the pupil's leaving (no pupil.left, no day).
    left_recorded: date | None = None
    #: What the school has shared of the pupil: category to the first day shared and the
    #: oldest record of it any sharing declared. The truth for retention due.
    held: dict[str, tuple[date, date | None]] = field(default_factory=dict)

    def shared(self, categories: list[str], day: date, oldest: dict[str, Any] | None) -> None:
        for category in categories:
            first, record = self.held.get(category, (day, None))
            declared = (oldest or {}).get(category)
            if declared is not None:
                declared = date.fromisoformat(declared)
                record = declared if record is None else min(record, declared)
            self.held[category] = (min(first, day), record)


def _stamp(at: datetime) -> str:
    text = at.isoformat()
    return text.replace("+00:00", "Z")


def _school_days_after(start: date, count: int) -> date:
    day = start
    while count:
        day += timedelta(days=1)
        if day.weekday() < 5:
            count -= 1
    return day


def _weekday(rng: random.Random, start: date, end: date) -> date:
    span = (end - start).days
    while True:
        day = start + timedelta(days=rng.randrange(span + 1))
        if day.weekday() < 5:
            return day


class Simulator:
    """Builds the year's events for ``pupils`` pupils across schools of about 500 each."""

    def __init__(self, pupils: int, violation_rate: float = 0.05, seed: int = 1) -> None:
        if not 0 <= violation_rate <= 1:
            raise ValueError("violation_rate must be between 0 and 1")
        self.rng = random.Random(seed)
        self.rate = violation_rate
        self.lines: list[Line] = []
        self._order = 0
        self.pupils = [self._pupil(i) for i in range(pupils)]

    def _pupil(self, i: int) -> _Pupil:
        school, serial = divmod(i, 500)
        la, estab = 850, 2001 + school
        body = f"{la:03d}{estab:04d}{(20 + serial // 100) % 100:02d}{serial % 100:03d}"
        urn = f"{116000 + school:06d}"
        age = self.rng.randint(4, 11)
        dob = date(2025 - age, self.rng.randint(1, 12), self.rng.randint(1, 28))
        return _Pupil(stdnum_upn.calc_check_digit(body) + body, urn, dob, self.rng.random() < 0.15)

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _violate(self) -> bool:
        return self.rng.random() < self.rate

    def _emit(
        self,
        at: datetime,
        event: dict[str, Any],
        decision: str = "allowed",
        rules: tuple[str, ...] = (),
        emit_at: datetime | None = None,
    ) -> Line:
        self._order += 1
        line = Line(emit_at or at, self._order, event, Expected(event.get("id"), decision, rules))
        self.lines.append(line)
        return line

    def _event(
        self, event_type: str, urn: str, at: datetime, data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": self._id(),
            "source": f"/schools/{urn}",
            "type": event_type,
            "time": _stamp(at),
            "datacontenttype": "application/json",
            "data": data,
        }

    # -- the year ---------------------------------------------------------------------

    def run(self) -> list[Line]:
        """Every line of the year, in emission order."""
        by_school: dict[str, list[_Pupil]] = {}
        for pupil in self.pupils:
            by_school.setdefault(pupil.urn, []).append(pupil)
        for pupil in self.pupils:
            self._pupil_year(pupil)
        for urn, pupils in by_school.items():
            for day in CENSUS_DAYS:
                for start in range(0, len(pupils), 30):
                    self._census(urn, pupils[start : start + 30], day)
        lines = sorted(self.lines, key=lambda line: (line.at, line.order))
        self._add_rejects_and_redeliveries(lines)
        return lines

    def _pupil_year(self, pupil: _Pupil) -> None:
        first, last = YEAR_START + timedelta(days=7), YEAR_END - timedelta(days=30)
        days = {_weekday(self.rng, first, last) for _ in range(self.rng.choice((0, 1, 1, 2, 2, 3)))}
        for day in sorted(days):  # in time order, so a destroyed record stays out of later ones
            self._referral(pupil, day)
        if self.rng.random() < 0.1:
            self._leave_and_transfer(pupil)

    def _census(self, urn: str, pupils: list[_Pupil], day: date) -> None:
        at = at_school(day, 10)
        categories = self.rng.sample(CENSUS_CATEGORIES, self.rng.randint(2, 5))
        data: dict[str, Any] = {
            "recipient": self.rng.choice(("dfe", "la:850")),
            "pupils": [{"upn": p.upn, "dob": p.dob.isoformat()} for p in pupils],
            "categories": categories,
            "lawful_basis": "legal_obligation",
            "channel": "collect",
        }
        if any(p.sen for p in pupils) and self.rng.random() < 0.5:
            data["categories"] = [*categories, "sen"]
            data["special_condition"] = "9.2.g"
        if "attendance" in categories:
            data["oldest_record"] = {"attendance": (day - timedelta(days=365 * 3)).isoformat()}
        rule = None
        if self._violate():
            rule = self.rng.choice(
                (
                    "category.not_permitted",
                    "basis.not_permitted",
                    "channel.not_permitted",
                    "special.no_condition",
                    "retention.expired",
                    "recipient.not_permitted",
                    "category.unknown",
                )
            )
            self._inject_census(data, rule, day)
        for pupil in pupils:
            pupil.shared(data["categories"], day, data.get("oldest_record"))
        event = self._event(CENSUS, urn, at, data)
        if rule:
            self._emit(at, event, INJECTED[rule], (rule,))
        else:
            self._emit(at, event)

    def _inject_census(self, data: dict[str, Any], rule: str, day: date) -> None:
        if rule == "category.not_permitted":
            data["categories"] = [*data["categories"], "nationality"]
        elif rule == "basis.not_permitted":
            data["lawful_basis"] = "public_task"
        elif rule == "channel.not_permitted":
            data["channel"] = "secure_email"
        elif rule == "special.no_condition":
            data["categories"] = [c for c in data["categories"] if c != "sen"] + ["ethnicity"]
            data.pop("special_condition", None)
        elif rule == "retention.expired":
            if "attendance" not in data["categories"]:
                data["categories"] = [*data["categories"], "attendance"]
            data["oldest_record"] = {"attendance": date(day.year - 8, 9, 1).isoformat()}
        elif rule == "recipient.not_permitted":
            data["recipient"] = "school:116999"
        elif rule == "category.unknown":
            data["categories"] = [*data["categories"], "photographs"]

    def _referral(self, pupil: _Pupil, day: date) -> None:
        at = at_school(day, self.rng.randint(9, 15), self.rng.randint(0, 59))
        kind = self.rng.choice(("nursing", "consent", "la"))
        data = self._referral_data(pupil, kind)
        rule = self._rule_to_break(kind, data) if self._violate() else None
        if kind == "consent" and rule != "consent.missing":
            given_at = at - timedelta(days=self.rng.randint(1, 20))
            consent = {
                "upn": pupil.upn,
                "consent_ref": data["consent_ref"],
                "recipients": [data["recipient"]],
                "categories": ["personal", "assessment", "sen"],
            }
            self._emit(given_at, self._event(CONSENT_GIVEN, pupil.urn, given_at, consent))
        if rule is not None:
            self._break(rule, data, pupil, at)
        pupil.shared(data["categories"], day, None)
        event = self._event(REFERRAL, pupil.urn, at, data)
        if rule:
            self._emit(at, event, INJECTED[rule], (rule,))
        else:
            self._emit(at, event)
        if rule == "consent.withdrawn":
            # Timed before the referral, but reaches the pipeline a week after it.
            withdrawn_at = at - timedelta(hours=2)
            withdrawal = {"upn": pupil.upn, "consent_ref": data["consent_ref"]}
            self._emit(
                withdrawn_at,
                self._event(CONSENT_WITHDRAWN, pupil.urn, withdrawn_at, withdrawal),
                emit_at=at + timedelta(days=7),
            )

    def _referral_data(self, pupil: _Pupil, kind: str) -> dict[str, Any]:
        """A referral's data as the school means to send it: to the school nurse, to an
        agency on the parents' consent, or to the local authority."""
        data: dict[str, Any]
        if kind == "nursing":
            categories = (
                ["personal", "medical"] if "medical" not in pupil.destroyed else ["personal"]
            )
            data = {
                "recipient": "agency:school-nursing",
                "categories": categories,
                "lawful_basis": "public_task",
                "channel": self.rng.choice(("secure_email", "portal", "in_person")),
            }
            if "medical" in categories:
                data["special_condition"] = "9.2.h"
        elif kind == "la":
            data = {
                "recipient": "la:850",
                "categories": ["personal", "attendance", "behaviour"],
                "lawful_basis": "public_task",
                "channel": "secure_email",
            }
        else:
            agency = self.rng.choice(
                ("agency:educational-psychology", "agency:speech-language-therapy")
            )
            data = {
                "recipient": agency,
                "categories": ["personal", "assessment", "sen"],
                "lawful_basis": "consent",
                "special_condition": "9.2.a",
                "consent_ref": f"CONSENT-{self.rng.getrandbits(40):010x}",
                "channel": "secure_email",
            }
        data["pupils"] = [{"upn": pupil.upn}]
        data["purpose"] = "support for the pupil"
        return data

    def _rule_to_break(self, kind: str, data: dict[str, Any]) -> str:
        choices: tuple[str, ...]
        if kind == "consent":
            choices = ("recipient.unknown", "consent.missing", "consent.withdrawn")
        elif "medical" in data["categories"]:
            choices = ("recipient.unknown", "record.destroyed", "channel.not_permitted")
        else:
            choices = ("recipient.unknown", "channel.not_permitted")
        return self.rng.choice(choices)

    def _break(self, rule: str, data: dict[str, Any], pupil: _Pupil, at: datetime) -> None:
        """Change the referral's ``data`` (or what came before it) so that it breaks
        ``rule``."""
        if rule == "recipient.unknown":
            data["recipient"] = "agency:private-tutoring"
            data["lawful_basis"] = "public_task"
            data.pop("consent_ref", None)
            if "special_condition" in data:
                data["special_condition"] = "9.2.h"
        elif rule == "channel.not_permitted":
            data["channel"] = "post"
        elif rule == "record.destroyed":
            # Medical notes only: no census or transfer carries them, and this pupil's
            # later referrals leave them out, so nothing else is affected.
            gone_at = at - timedelta(seconds=1)
            destroyed = {"upn": pupil.upn, "categories": ["medical"]}
            self._emit(gone_at, self._event(RECORD_DESTROYED, pupil.urn, gone_at, destroyed))
            pupil.destroyed.add("medical")

    def _leave_and_transfer(self, pupil: _Pupil) -> None:
        left_on = _weekday(self.rng, date(2025, 10, 1), date(2026, 6, 1))
        destination = f"school:{self.rng.randint(100000, 149999):06d}"
        left_at = at_school(left_on, 15, 30)
        rule = (
            self.rng.choice(
                ("transfer.wrong_destination", "transfer.late", "transfer.no_destination")
            )
            if self._violate()
            else None
        )
        if rule != "transfer.no_destination":
            pupil.left_recorded = left_on
            self._emit(
                left_at,
                self._event(
                    LEFT,
                    pupil.urn,
                    left_at,
                    {"upn": pupil.upn, "left_on": left_on.isoformat(), "destination": destination},
                ),
            )
        pupil.left_on = left_on
        days = 22 if rule == "transfer.late" else self.rng.randint(1, 10)
        sent_on = _school_days_after(left_on, days)
        at = at_school(sent_on, 11)
        recipient = "school:150001" if rule == "transfer.wrong_destination" else destination
        categories = ["personal", "attendance", "assessment"]
        data: dict[str, Any] = {
            "recipient": recipient,
            "pupils": [{"upn": pupil.upn, "dob": pupil.dob.isoformat()}],
            "categories": categories + (["sen"] if pupil.sen else []),
            "lawful_basis": "legal_obligation",
            "channel": "s2s",
            "oldest_record": {"attendance": date(sent_on.year - 2, 9, 1).isoformat()},
        }
        if pupil.sen:
            data["special_condition"] = "9.2.g"
        pupil.shared(data["categories"], sent_on, data["oldest_record"])
        event = self._event(TRANSFER, pupil.urn, at, data)
        if rule:
            self._emit(at, event, INJECTED[rule], (rule,))
        else:
            self._emit(at, event)

    def _add_rejects_and_redeliveries(self, lines: list[Line]) -> None:
        """Malformed lines and redeliveries, spread through the year at the violation rate."""
        count = int(len(lines) * self.rate / 4)
        for _ in range(count):
            source = self.rng.choice(lines[: len(lines) // 2 or 1])
            where = self.rng.randrange(len(lines))
            kind = self.rng.choice(("invalid", "upn", "redelivery"))
            at = lines[where].at
            if kind == "redelivery":
                line = Line(at, 0, source.event, source.expected, redelivery=True)
            elif kind == "invalid":
                broken = {**source.event, "id": self._id()}
                broken["data"] = {
                    k: v for k, v in source.event["data"].items() if k != "upn" and k != "pupils"
                }
                line = Line(at, 0, broken, Expected(broken["id"], "rejected", ("event.invalid",)))
            else:
                pupil = self.rng.choice(self.pupils)
                bad = ("A" if pupil.upn[0] != "A" else "B") + pupil.upn[1:]
                event = self._event(
                    LEFT,
                    pupil.urn,
                    at,
                    {"upn": bad, "left_on": at.date().isoformat(), "destination": "unknown"},
                )
                line = Line(at, 0, event, Expected(event["id"], "rejected", ("pupil.invalid_upn",)))
            lines.insert(where + 1, line)


def simulate(pupils: int, violation_rate: float = 0.05, seed: int = 1) -> list[Line]:
    """The lines of a simulated school year, in the order an MIS would emit them."""
    return Simulator(pupils, violation_rate, seed).run()


def events_of(lines: list[Line]) -> Iterator[dict[str, Any]]:
    for line in lines:
        yield line.event
