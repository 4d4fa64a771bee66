"""Webhook notices of high-severity incidents: signed, retried, pseudonymous, sent once."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select

from pipeline.engine import Position
from pipeline.incidents.notify import (
    Smtp,
    Target,
    email_message,
    email_target,
    notify_new_incidents,
    signature,
    webhook_target,
)
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import ENTRY_PUPIL, PUPILS, Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.pupils import drawn, finder
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.transport.broker import free_port
from tests.factory import line, referral, upn
from tests.integration.breaches import ledger_with_breaches

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SECRET = b"shared-with-the-receiver"


class Receiver:
    """A local HTTP endpoint answering with the given statuses in turn, then 200."""

    def __init__(self, statuses: list[int], location: str | None = None) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def ledger(sqlite_url: str, policy: Policy) -> Ledger:
    """A ledger with one high-severity breach: medical notes sent without consent."""
    ledger = Ledger.open(sqlite_url)
    schema.upgrade(ledger.engine)
    writer = LedgerWriter(ledger, policy, pseudonymiser(bytes(range(32))))
    event = referral(
        lawful_basis="consent",
        special_condition="9.2.a",
        consent_ref="C-1",
        categories=["personal", "medical"],
    )
    writer.write([(line(event), Position.line("f", 1))])
    return ledger


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    made = Receiver(getattr(request, "param", []))
    yield made
    made.close()


def _notify(ledger: Ledger, url: str) -> int:
    target = webhook_target(url, SECRET, attempts=4, first_delay=0.01)
    return notify_new_incidents(ledger, [target], "https://desk.school.example")


@pytest.mark.parametrize("receiver", [[503, 503]], indirect=True)
def test_a_receiver_that_fails_twice_gets_the_notice_on_the_third_attempt(
    ledger: Ledger, receiver: Receiver
) -> None:
    assert _notify(ledger, receiver.url) == 1
    assert len(receiver.requests) == 3
    headers, body = receiver.requests[-1]
    timestamp = headers["X-Sharing-Audit-Timestamp"]
    assert headers["X-Sharing-Audit-Signature"] == signature(SECRET, timestamp, body)
    sent = orjson.loads(body)
    assert sent["severity"] == "high" and sent["rule"] == "consent.missing"
    assert sent["link"] == f"https://desk.school.example/incidents/{sent['incident']}"
    assert sent["pupil_keys"] == [finder(ledger)(upn(1))]
    assert upn(1).encode() not in body


def test_a_notice_that_arrived_is_not_sent_again(ledger: Ledger, receiver: Receiver) -> None:
    assert _notify(ledger, receiver.url) == 1
    assert _notify(ledger, receiver.url) == 0
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("receiver", [[500] * 4], indirect=True)
def test_a_notice_that_never_arrived_is_tried_again_on_the_next_round(
    ledger: Ledger, receiver: Receiver
) -> None:
    assert _notify(ledger, receiver.url) == 0
    assert len(receiver.requests) == 4
    assert _notify(ledger, receiver.url) == 1
    with ledger.engine.connect() as connection:
        row = connection.exec_driver_sql("SELECT status, attempts FROM incident_notice").one()
    assert tuple(row) == ("sent", 1)


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
def test_a_refusal_by_the_receiver_is_not_retried(ledger: Ledger, receiver: Receiver) -> None:
    assert _notify(ledger, receiver.url) == 0
    assert len(receiver.requests) == 1
    with ledger.engine.connect() as connection:
        row = connection.exec_driver_sql("SELECT status, last_error FROM incident_notice").one()
    assert tuple(row) == ("failed", "HTTP 400")


class Mailbox:
    """A local SMTP server (aiosmtpd) keeping what it receives; it can refuse at first."""

    def __init__(self, refuse: int = 0) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[bytes] = []
        self.refuse = refuse
        mailbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                if mailbox.refuse > 0:
                    mailbox.refuse -= 1
                    return "451 try again later"
                mailbox.messages.append(envelope.content)
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
        self.controller.start()
        self.smtp = Smtp("127.0.0.1", self.controller.port, "desk@school.example", tls="none")

    def close(self) -> None:
        self.controller.stop()


def test_an_email_notice_arrives_after_a_refusal_and_names_no_pupil(ledger: Ledger) -> None:
    mailbox = Mailbox(refuse=1)
    try:
        target = email_target("dpo@school.example", mailbox.smtp, attempts=3, first_delay=0.01)
        assert notify_new_incidents(ledger, [target], "https://desk.school.example") == 1
    finally:
        mailbox.close()
    [message] = mailbox.messages
    text = message.decode()
    assert "Subject: [sharing-audit] HIGH breach: no consent on record, to" in text
    assert "https://desk.school.example/incidents/" in text
    assert upn(1) not in text


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_a_failed_delivery_and_its_target_gets_nothing(
    ledger: Ledger, receiver: Receiver, status: int
) -> None:
    redirecting = Receiver([status], location=receiver.url)
    try:
        assert _notify(ledger, redirecting.url) == 0
    finally:
        redirecting.close()
    assert receiver.requests == []
    with ledger.engine.connect() as connection:
        row = connection.exec_driver_sql("SELECT status, last_error FROM incident_notice").one()
    assert tuple(row) == ("failed", f"HTTP {status}: redirects are not followed")


def test_one_target_that_fails_does_not_stop_the_others(ledger: Ledger, receiver: Receiver) -> None:
    def broken(sent: dict[str, Any]) -> Any:
        raise ValueError("a target that cannot even try")

    targets = [
        Target("webhook", "https://broken.example/hook", broken),
        webhook_target(receiver.url, SECRET, attempts=1),
    ]
    assert notify_new_incidents(ledger, targets, "https://desk.school.example") == 1
    assert len(receiver.requests) == 1
    with ledger.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT target, status, last_error FROM incident_notice"
        ).all()
    assert {r[0]: (r[1], r[2]) for r in rows} == {
        "https://broken.example/hook": ("failed", "ValueError: a target that cannot even try"),
        receiver.url: ("sent", None),
    }


def test_an_email_subject_stays_one_line_whatever_the_recipient_holds() -> None:
    sent = {
        "incident": 1,
        "severity": "high",
        "breach": True,
        "rule": "consent.missing",
        "recipient": "agency:x\r\nBcc: someone@example.org\u2028x",
        "alerts": 1,
        "pupil_keys": [],
        "deadline_uk": None,
        "link": "https://desk/incidents/1",
    }
    message = email_message(Smtp("127.0.0.1"), "dpo@school.example", sent)
    headers = message.as_bytes().split(b"\n\n", 1)[0].decode()
    assert [h for h in headers.splitlines() if h.startswith("Bcc")] == []
    assert "x Bcc: someone@example.org x" in message["Subject"]


class TlsMailbox:
    """An SMTP server that offers STARTTLS with a certificate from a throwaway CA, asks
    for a password only over TLS, and records every password it was sent."""

    def __init__(self) -> None:
        import ssl

        import trustme
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        self.messages: list[bytes] = []
        self.passwords: list[bytes] = []
        mailbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                mailbox.messages.append(envelope.content)
                return "250 OK"

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> AuthResult:
            mailbox.passwords.append(auth_data.password)
            return AuthResult(success=True)

        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=free_port(),
            tls_context=context,
            require_starttls=True,
            authenticator=authenticator,
            auth_require_tls=True,
        )
        self.controller.start()

    def smtp(self, ca_file: str | None) -> Smtp:
        return Smtp(
            "127.0.0.1",
            self.controller.port,
            "desk@school.example",
            "starttls",
            "desk",
            "secret",
            ca_file,
        )

    def close(self) -> None:
        self.controller.stop()


def test_starttls_refuses_a_server_whose_certificate_does_not_verify(ledger: Ledger) -> None:
    mailbox = TlsMailbox()
    try:
        target = email_target(
            "dpo@school.example", mailbox.smtp(None), attempts=2, first_delay=0.01
        )
        assert notify_new_incidents(ledger, [target], "https://desk.school.example") == 0
    finally:
        mailbox.close()
    assert mailbox.passwords == [] and mailbox.messages == []
    with ledger.engine.connect() as connection:
        error = connection.exec_driver_sql("SELECT last_error FROM incident_notice").scalar_one()
    assert error.startswith("the SMTP server's certificate did not verify")


def test_starttls_delivers_to_a_server_the_configured_ca_vouches_for(
    ledger: Ledger, tmp_path: Any
) -> None:
    mailbox = TlsMailbox()
    ca_file = tmp_path / "ca.pem"
    mailbox.ca.cert_pem.write_to_path(str(ca_file))
    try:
        target = email_target(
            "dpo@school.example", mailbox.smtp(str(ca_file)), attempts=2, first_delay=0.01
        )
        assert notify_new_incidents(ledger, [target], "https://desk.school.example") == 1
    finally:
        mailbox.close()
    assert mailbox.passwords == [b"secret"] and len(mailbox.messages) == 1


def test_one_incident_that_cannot_be_told_does_not_stop_the_others(
    sqlite_url: str, policy: Policy, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.incidents import notify

    ledger = ledger_with_breaches(sqlite_url, policy)
    real = notify.notice
    first: list[int] = []

    def failing(incident_id: int, *args: Any) -> dict[str, Any]:
        if not first or first[0] == incident_id:
            first.append(incident_id)
            raise ValueError("an incident that cannot be told")
        return real(incident_id, *args)

    monkeypatch.setattr(notify, "notice", failing)
    assert _notify(ledger, receiver.url) == 1
    assert len(receiver.requests) == 1
    assert orjson.loads(receiver.requests[0][1])["incident"] != first[0]


def test_a_notice_names_only_the_pupils_its_entries_name(
    ledger: Ledger, receiver: Receiver
) -> None:
    """A row slipped into the pupil index beside the breach is not believed: the notice
    goes outside the school, and would carry another child's pseudonym."""
    other = drawn()  # another child's
    with ledger.engine.begin() as connection:
        number = int(connection.execute(select(func.max(PUPILS.c.id))).scalar_one()) + 1
        connection.execute(insert(PUPILS).values(id=number, pupil_key=other))
        connection.execute(insert(ENTRY_PUPIL).values(pupil=number, seq=1))
    assert _notify(ledger, receiver.url) == 1
    sent = orjson.loads(receiver.requests[-1][1])
    assert sent["pupil_keys"] == [finder(ledger)(upn(1))]
