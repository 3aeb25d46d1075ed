"""The client for an external TSA, against the gateway's TSA served over HTTP and worse."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from evidence.errors import TimestampError
from evidence.hashing import sha256
from evidence.timestamp import verify_timestamp
from gateway.errors import TimestampAuthorityError
from gateway.pki.ca import EvidenceCA
from gateway.timestamping import (
    DEFAULT_POLICY_OID,
    REPLY_TYPE,
    TimeStampAuthority,
    Timestamper,
    TsaClient,
    TsaHttpServer,
    build_request,
)

DIGEST = sha256(b"checkpoint: City Hospital No. 1 ledger, size 7")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port



class _CannedHandler(BaseHTTPRequestHandler):
    """Answers every POST with the status, type and body the test put on the server."""

    server: _CannedServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status, content_type, body = self.server.canned
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _CannedServer(ThreadingHTTPServer):
    def __init__(self, canned: tuple[int, str, bytes]) -> None:
        self.canned = canned
        super().__init__(("127.0.0.1", 0), _CannedHandler)


@pytest.fixture
def canned() -> Iterator[_CannedServer]:
    """A misbehaving HTTP "TSA"; set ``.canned`` to what it answers."""
    httpd = _CannedServer((500, "text/plain", b"internal error"))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    thread.join()
    httpd.server_close()


def test_client_gets_a_verified_token_over_http(
    tsa: TimeStampAuthority, server: TsaHttpServer
) -> None:
    client = TsaClient(server.url, tsa.ca_certificate)
    reply = client.stamp(DIGEST)
    info = verify_timestamp(reply, DIGEST, tsa.ca_certificate)
    assert info.tsa_name == tsa.certificate.subject.rfc4514_string()
    # Each request carries a fresh nonce, so two replies differ.
    assert client.stamp(DIGEST) != reply


def test_client_with_the_tsa_certificate_given(
    tsa: TimeStampAuthority, server: TsaHttpServer
) -> None:
    client = TsaClient(
        server.url,
        [tsa.ca_certificate],
        certificates=[tsa.certificate],
        policy_oid=DEFAULT_POLICY_OID,
    )
    assert verify_timestamp(client.stamp(DIGEST), DIGEST, tsa.ca_certificate).digest == DIGEST



def test_client_refuses_a_token_from_an_untrusted_tsa(server: TsaHttpServer) -> None:
    stranger = EvidenceCA.create("Other Hospital")
    client = TsaClient(server.url, stranger.certificate)
    with pytest.raises(TimestampAuthorityError, match="not issued by the trusted CA"):
        client.stamp(DIGEST)


def test_client_reports_a_rejection(tsa: TimeStampAuthority, server: TsaHttpServer) -> None:
    client = TsaClient(server.url, tsa.ca_certificate, policy_oid="1.2.3.4")
    with pytest.raises(TimestampAuthorityError, match=r"refused the request: rejection \(unacc"):
        client.stamp(DIGEST)


def test_client_reports_http_500(tsa: TimeStampAuthority, canned: _CannedServer) -> None:
    url = f"http://127.0.0.1:{canned.server_address[1]}/tsa"
    with pytest.raises(TimestampAuthorityError, match=r"answered HTTP 500"):
        TsaClient(url, tsa.ca_certificate).stamp(DIGEST)


def test_client_refuses_a_reply_of_another_type(
    tsa: TimeStampAuthority, canned: _CannedServer
) -> None:
    canned.canned = (200, "text/html", b"<html>login</html>")
    url = f"http://127.0.0.1:{canned.server_address[1]}/"
    with pytest.raises(TimestampAuthorityError, match="answered text/html, not application/ti"):
        TsaClient(url, tsa.ca_certificate).stamp(DIGEST)


def test_client_refuses_a_replayed_reply(tsa: TimeStampAuthority, canned: _CannedServer) -> None:
    """A reply for the same digest but another request (another nonce) is refused."""
    canned.canned = (200, REPLY_TYPE, tsa.respond(build_request(DIGEST, nonce=1)))
    url = f"http://127.0.0.1:{canned.server_address[1]}/"
    with pytest.raises(TimestampAuthorityError, match="nonce 1 is not the request's nonce"):
        TsaClient(url, tsa.ca_certificate).stamp(DIGEST)


def test_client_refuses_a_garbled_reply(tsa: TimeStampAuthority, canned: _CannedServer) -> None:
    canned.canned = (200, REPLY_TYPE, b"\x30\x82\xff")
    url = f"http://127.0.0.1:{canned.server_address[1]}/"
    with pytest.raises(TimestampAuthorityError, match="not valid DER") as caught:
        TsaClient(url, tsa.ca_certificate).stamp(DIGEST)
    assert isinstance(caught.value.__cause__, TimestampError)


def test_client_reports_an_unreachable_tsa(tsa: TimeStampAuthority) -> None:
    url = f"http://127.0.0.1:{_free_port()}/"
    with pytest.raises(TimestampAuthorityError, match=f"cannot reach the TSA at {url}"):
        TsaClient(url, tsa.ca_certificate, timeout=5).stamp(DIGEST)


def test_client_reports_a_tsa_that_never_answers(tsa: TimeStampAuthority) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the connection in the backlog, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with pytest.raises(TimestampAuthorityError, match=r"did not answer within 0\.3 s"):
            TsaClient(url, tsa.ca_certificate, timeout=0.3).stamp(DIGEST)


@pytest.mark.parametrize("url", ["ftp://tsa.example/", "tsa.example", "http://", "file:///etc/x"])
def test_client_refuses_urls_that_are_not_http(tsa: TimeStampAuthority, url: str) -> None:
    with pytest.raises(TimestampAuthorityError, match="not an http"):
        TsaClient(url, tsa.ca_certificate)


def test_the_authority_and_a_client_stamp_through_the_one_seam(
    tsa: TimeStampAuthority, server: TsaHttpServer
) -> None:
    """What the ledger and the export rely on: a stamp that verifies under what the
    stamper says a court is given, whichever stamper it is."""
    client = TsaClient(server.url, tsa.ca_certificate, certificates=[tsa.certificate])
    for stamper in (tsa, client):
        seam: Timestamper = stamper
        assert seam.trust_anchors == (tsa.ca_certificate,)
        assert seam.certificates == (tsa.certificate,)
        reply = seam.stamp(DIGEST)
        info = verify_timestamp(reply, DIGEST, seam.trust_anchors, certificates=seam.certificates)
        assert info.digest == DIGEST and info.nonce is not None
        with pytest.raises(TimestampError, match="for a different digest"):
            verify_timestamp(reply, sha256(b"another note"), seam.trust_anchors)
