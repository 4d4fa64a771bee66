"""Telling people about new high-severity incidents: signed webhooks and email, retried.

A notice carries what a DPO needs to decide to look (severity, cause, deadline, how many
alerts, the pupils' pseudonyms) and a link to the incident; never a UPN or a name. Each
webhook POST is signed: ``X-Sharing-Audit-Signature: sha256=HEX``, the HMAC-SHA256 under
the shared secret of ``TIMESTAMP.BODY`` with ``TIMESTAMP`` from
``X-Sharing-Audit-Timestamp``, so a receiver can check both origin and freshness
(:func:`signature` is the reference).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import orjson
from sqlalchemy import Connection, Table, delete, insert, select

from pipeline.backoff import backoff_delays
from pipeline.incidents.desk import incidents
from pipeline.incidents.lifecycle import Incident, Status
from pipeline.ledger.reading.queries import pupils_named
from pipeline.ledger.storage.models import IncidentNotice
from pipeline.ledger.storage.store import Ledger, now_text
from pipeline.logging import get_logger
from pipeline.schooltime import shown_in_school_time
from pipeline.shown import Naming, recipient_name, rule_name
from schemas.alerts import Severity

log = get_logger(__name__)
WEBHOOK = "webhook"
EMAIL = "email"


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    attempts: int
    error: str | None = None


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of ``X-Sharing-Audit-Signature`` for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def notice(
    incident_id: int,
    incident: Incident,
    pupil_keys: Sequence[str],
    desk_url: str,
    naming: Naming | None = None,
) -> dict[str, Any]:
    """The JSON a webhook receives: pseudonymous, with a link to the incident; the cause,
    recipient and school by their ids, and in the desk's words (``said``) for a person."""
    deadline = incident.deadline
    cause = incident.cause
    naming = naming or Naming()
    return {
        "incident": incident_id,
        "severity": incident.severity.value,
        "breach": incident.breach,
        "rule": incident.cause.rule,
        "recipient": incident.cause.recipient,
        "school": incident.cause.school,
        "detected_at": incident.detected_at.isoformat(),
        "deadline": deadline.isoformat() if deadline else None,
        "deadline_uk": shown_in_school_time(deadline) if deadline else None,
        "alerts": len(incident.entries),
        "pupil_keys": sorted(set(pupil_keys)),
        "link": f"{desk_url.rstrip('/')}/incidents/{incident_id}",
        "said": {
            "cause": rule_name(cause.rule),
            "recipient": naming.recipient(cause.recipient, cause.school)
            if cause.recipient
            else None,
            "school": naming.school(cause.school) if cause.school else None,
        },
    }


def _retried(
    attempt_once: Callable[[], tuple[bool | None, str]], attempts: int, first_delay: float
) -> Delivery:
    """Call ``attempt_once`` (True: delivered; False: refused for good; None: try again,
    with the error) up to ``attempts`` times, waiting with backoff between tries."""
    delays = backoff_delays(first_delay, cap=60.0)
    error = ""
    for attempt in range(1, attempts + 1):
        outcome, error = attempt_once()
        if outcome is not None:
            return Delivery(outcome, attempt, None if outcome else error)
        if attempt < attempts:
            time.sleep(next(delays))
    return Delivery(False, attempts, error)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuses every redirect: following one would turn the POST into a body-less GET
    reported as delivered, and send the signature to whatever host the redirect names."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def post_signed(
    url: str,
    body: bytes,
    secret: bytes,
    attempts: int = 4,
    first_delay: float = 0.5,
    timeout: float = 10.0,
) -> Delivery:
    """POST ``body`` to ``url`` until a 2xx, at most ``attempts`` times with backoff.
    A 4xx other than 408 and 429 is final: retrying would not change the answer; so is a
    3xx, since redirects are not followed (configure the address they name instead)."""

    def post() -> tuple[bool | None, str]:
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Sharing-Audit-Timestamp": timestamp,
                "X-Sharing-Audit-Signature": signature(secret, timestamp, body),
            },
        )
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return True, ""
                return None, f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                return False, f"HTTP {exc.code}: redirects are not followed"
            final = 400 <= exc.code < 500 and exc.code not in (408, 429)
            return (False if final else None), f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"

    return _retried(post, attempts, first_delay)


NOTICES: Table = IncidentNotice.__table__  # type: ignore[attr-defined]


def _delivered(connection: Connection) -> set[tuple[int, str, str]]:
    rows = connection.execute(
        select(NOTICES.c.incident_id, NOTICES.c.channel, NOTICES.c.target).where(
            NOTICES.c.status == "sent"
        )
    )
    return {(r[0], r[1], r[2]) for r in rows}


@dataclass(frozen=True, slots=True)
class Target:
    """Somewhere notices go: a channel, an address, and how to send one notice there."""

    channel: str
    address: str
    send: Callable[[dict[str, Any]], Delivery]
    #: The school whose incidents alone go here (its URN); None: every incident (the trust).
    school: str | None = None

    def serves(self, incident: Incident) -> bool:
        return self.school is None or self.school == incident.cause.school


def webhook_target(
    url: str,
    secret: bytes,
    attempts: int = 4,
    first_delay: float = 0.5,
    school: str | None = None,
) -> Target:
    return Target(
        WEBHOOK,
        url,
        lambda sent: post_signed(url, orjson.dumps(sent), secret, attempts, first_delay),
        school,
    )


@dataclass(frozen=True, slots=True)
class Smtp:
    """An SMTP relay: the school's or the trust's mail server.

    ``tls`` is ``starttls`` (upgrade a plain connection, port 587), ``ssl`` (SMTPS,
    implicit TLS, port 465) or ``none`` (a relay on the same host only). With TLS the
    server's certificate and name are verified against the system's CAs, or ``ca_file``;
    a password is never sent over a connection that is not verified TLS.
    """

    host: str
    port: int = 587
    sender: str = "sharing-audit@localhost"
    tls: str = "starttls"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def connect(self) -> smtplib.SMTP:
        """An open connection, upgraded to verified TLS unless ``tls`` is ``none``."""
        if self.tls == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=10, context=self.tls_context())
        server = smtplib.SMTP(self.host, self.port, timeout=10)
        if self.tls == "starttls":
            try:
                server.starttls(context=self.tls_context())
            except BaseException:
                server.close()
                raise
        return server


def email_target(
    to: str, smtp: Smtp, attempts: int = 4, first_delay: float = 0.5, school: str | None = None
) -> Target:
    return Target(EMAIL, to, lambda sent: send_email(smtp, to, sent, attempts, first_delay), school)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_text(text: str, limit: int = 200) -> str:
    """``text`` fit for one email header line: control characters (CR and LF above all,
    which would end the header) become a space, and it is cut at ``limit``."""
    return _CONTROL.sub(" ", text)[:limit]


def email_message(smtp: Smtp, to: str, sent: dict[str, Any]) -> EmailMessage:
    """The notice as a plain-text email: what, how urgent, and the link; no identities."""
    message = EmailMessage()
    kind = "breach" if sent["breach"] else "review"
    said = sent.get("said") or {}
    cause = said.get("cause") or rule_name(sent["rule"])
    recipient = said.get("recipient") or (
        recipient_name(sent["recipient"]) if sent["recipient"] else None
    )
    to_whom = f", to {recipient}" if recipient else ""
    at = f", at {said['school']}" if said.get("school") else ""
    message["Subject"] = header_text(
        f"[sharing-audit] {sent['severity'].upper()} {kind}: {cause}{to_whom}"
    )
    message["From"], message["To"] = smtp.sender, to
    lines = [
        f"Incident {sent['incident']}: {sent['severity']} {kind}.",
        f"Cause: {cause}{to_whom}{at}.",
        f"Alerts: {sent['alerts']}; pupils (pseudonyms): {', '.join(sent['pupil_keys'])}.",
    ]
    if sent["deadline_uk"]:
        lines.append(f"Tell the ICO by {sent['deadline_uk']} unless no risk is likely.")
    lines += ["", f"Open it: {sent['link']}"]
    message.set_content("\n".join(lines) + "\n")
    return message


def send_email(
    smtp: Smtp, to: str, sent: dict[str, Any], attempts: int = 4, first_delay: float = 0.5
) -> Delivery:
    def send() -> tuple[bool | None, str]:
        try:
            if smtp.username and smtp.tls == "none":
                return False, "a password is not sent over a connection without TLS"
            with smtp.connect() as server:
                if smtp.username:
                    server.login(smtp.username, smtp.password or "")
                server.send_message(email_message(smtp, to, sent))
            return True, ""
        except ssl.SSLCertVerificationError as exc:
            return False, f"the SMTP server's certificate did not verify: {exc.verify_message}"
        except (smtplib.SMTPException, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]

    return _retried(send, attempts, first_delay)


def notify_new_incidents(
    ledger: Ledger, targets: Sequence[Target], desk_url: str, naming: Naming | None = None
) -> int:
    """Send every open high-severity incident to every target that serves it (the trust's,
    and its own school's) not yet reached; how many notices arrived. Failures are
    recorded and tried again on the next call. ``naming``: the packs and register that
    name recipients and schools in the notices' words."""
    if not targets:
        return 0
    with ledger.engine.connect() as connection:
        found = incidents(connection, open_only=True)
        done = _delivered(connection)
        due = [
            (incident_id, incident, pupils_named(connection, incident.entries))
            for incident_id, incident in found.items()
            if incident.severity is Severity.HIGH and incident.status is not Status.CLOSED
        ]
    arrived = 0
    for incident_id, incident, pupils in due:
        try:
            sent = notice(incident_id, incident, pupils, desk_url, naming)
        except Exception as exc:  # one incident that cannot be told holds back no other
            log.error("incident_notice_unbuildable", incident=incident_id, error=type(exc).__name__)
            continue
        for target in targets:
            if not target.serves(incident) or (incident_id, target.channel, target.address) in done:
                continue
            delivery = _delivered_to(target, sent)
            _record(ledger, incident_id, target, delivery)
            arrived += delivery.ok
            log.info(
                "incident_notified" if delivery.ok else "incident_notice_failed",
                incident=incident_id,
                channel=target.channel,
                attempts=delivery.attempts,
                error=delivery.error,
            )
    return arrived


def _delivered_to(target: Target, sent: dict[str, Any]) -> Delivery:
    """How sending ``sent`` to ``target`` went; a failure of one target or one notice is
    recorded against it, and the round goes on to the others."""
    try:
        return target.send(sent)
    except Exception as exc:
        return Delivery(False, 1, f"{type(exc).__name__}: {exc}"[:300])


def _record(ledger: Ledger, incident_id: int, target: Target, delivery: Delivery) -> None:
    """Replace the notice's row with how this delivery went."""
    key = {"incident_id": incident_id, "channel": target.channel, "target": target.address}
    with ledger.engine.begin() as connection:
        connection.execute(delete(NOTICES).filter_by(**key))
        connection.execute(
            insert(NOTICES).values(
                **key,
                status="sent" if delivery.ok else "failed",
                attempts=delivery.attempts,
                last_error=delivery.error,
                updated_at=now_text(),
            )
        )
