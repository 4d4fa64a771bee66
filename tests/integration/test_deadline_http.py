"""A POST given one deadline over the whole exchange, over HTTP and HTTPS, against peers
on 127.0.0.1 that answer, dribble, say nothing, or redirect."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.deadline_http import NoAnswer, post_within
from tests.integration.peers import answering, dribbling, peer, silent

pytestmark = pytest.mark.integration


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 from a throwaway CA, which the
    client trusts (SSL_CERT_FILE)."""
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    yield context


def outcome_within(url: str, seconds: float) -> str:
    """What ``post_within`` said, run beside the test so that a hang fails it."""
    said: list[str] = []

    def post() -> None:
        try:
            said.append(repr(post_within(url, b"old 0\n\n", "text/plain", seconds)))
        except NoAnswer as exc:
            said.append(str(exc))

    run = threading.Thread(target=post, daemon=True)
    run.start()
    run.join(30)
    assert said, f"post_within({url}) still waiting after 30 s with a deadline of {seconds} s"
    return said[0]


def test_an_https_peer_is_asked_and_its_answer_taken(tls: ssl.SSLContext) -> None:
    with peer(answering(200, b"cosigned\n"), tls) as ok:
        assert post_within(ok.url, b"old 0\n\n", "text/plain", 5) == (200, b"cosigned\n")
        assert ok.requests[0].endswith(b"\r\n\r\nold 0\n\n")


def test_an_https_peer_answering_a_byte_at_a_time_is_cut_off_at_the_deadline(
    tls: ssl.SSLContext,
) -> None:
    with peer(dribbling, tls) as slow:
        assert outcome_within(slow.url, 1) == "no whole answer within 1 s"


def test_a_peer_silent_through_the_tls_handshake_is_cut_off_at_the_deadline() -> None:
    with peer(silent) as quiet:
        url = quiet.url.replace("http://", "https://")
        assert outcome_within(url, 1) == "no whole answer within 1 s"


def test_a_redirect_is_an_answer_not_followed() -> None:
    with peer(answering(302, b"elsewhere")) as moved:
        assert post_within(moved.url, b"", "text/plain", 5) == (302, b"elsewhere")
        assert len(moved.requests) == 1


def test_a_peer_not_speaking_http_is_said_so() -> None:
    with peer(lambda connection, _: connection.sendall(b"SSH-2.0-OpenSSH\r\n")) as odd:
        assert outcome_within(odd.url, 5).startswith("not an HTTP answer")
