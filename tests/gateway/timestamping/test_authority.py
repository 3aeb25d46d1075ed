"""The gateway's TSA, its HTTP front and the client for external TSAs, over real sockets."""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import rfc3161_client
from asn1crypto import tsp
from cryptography.hazmat.primitives.asymmetric import ec

from evidence.errors import TimestampError
from evidence.hashing import sha256
from evidence.timestamp import TimestampResponse, TimestampToken, verify_timestamp
from gateway.errors import GatewayError, TimestampAuthorityError
from gateway.pki.ca import EvidenceCA
from gateway.timestamping.authority import (
    DEFAULT_POLICY_OID,
    QUERY_TYPE,
    REPLY_TYPE,
    TimeStampAuthority,
    TimeStamper,
    TsaClient,
    TsaHttpServer,
    build_request,
)

DIGEST = sha256(b"checkpoint: City Hospital No. 1 ledger, size 7")


@pytest.fixture(scope="module")
def ca() -> EvidenceCA:
    return EvidenceCA.create("City Hospital No. 1")


@pytest.fixture(scope="module")
def tsa(ca: EvidenceCA) -> TimeStampAuthority:
    key, certificate = ca.issue_tsa_certificate("City Hospital No. 1 Gateway TSA")
    return TimeStampAuthority(key, certificate, ca.certificate)


@pytest.fixture
def server(tsa: TimeStampAuthority) -> Iterator[TsaHttpServer]:
    with TsaHttpServer(tsa, "127.0.0.1", 0) as running:
        yield running


def _request(**fields: Any) -> bytes:
    """A TimeStampReq with SHA-256 imprint of DIGEST, with ``fields`` replaced."""
    request: dict[str, Any] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": DIGEST},
    }
    request.update(fields)
    return bytes(tsp.TimeStampReq(request).dump())


def _imprint(algorithm: str, digest: bytes) -> dict[str, Any]:
    return {"hash_algorithm": {"algorithm": algorithm}, "hashed_message": digest}


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


# --- the TSA itself ------------------------------------------------------------------------


def test_stamp_returns_a_reply_that_verifies(tsa: TimeStampAuthority) -> None:
    reply = tsa.stamp(DIGEST)
    info = verify_timestamp(reply, DIGEST, tsa.ca_certificate)
    assert info.policy == DEFAULT_POLICY_OID
    assert info.nonce is not None
    assert abs(info.gen_time - datetime.now(UTC)) < timedelta(minutes=1)


def test_both_stampers_fit_the_seam(tsa: TimeStampAuthority) -> None:
    client: TimeStamper = TsaClient("http://127.0.0.1:1/", tsa.ca_certificate)
    local: TimeStamper = tsa
    assert callable(client.stamp)
    assert callable(local.stamp)


def test_serial_numbers_are_unique(tsa: TimeStampAuthority) -> None:
    serials = {
        TimestampToken.from_der(tsa.respond(build_request(DIGEST))).info.serial for _ in range(20)
    }
    assert len(serials) == 20


def test_nonce_is_echoed_and_certificates_follow_cert_req(tsa: TimeStampAuthority) -> None:
    with_certs = TimestampToken.from_der(tsa.respond(build_request(DIGEST, nonce=2**70 + 5)))
    assert with_certs.info.nonce == 2**70 + 5
    assert set(with_certs.certificates) == {tsa.certificate, tsa.ca_certificate}
    without = TimestampToken.from_der(tsa.respond(build_request(DIGEST, cert_req=False)))
    assert without.info.nonce is None
    assert without.certificates == ()


def test_requested_policy_is_honoured_when_it_is_ours(tsa: TimeStampAuthority) -> None:
    reply = tsa.respond(build_request(DIGEST, policy_oid=DEFAULT_POLICY_OID))
    assert TimestampResponse.from_der(reply).status == "granted"


@pytest.mark.parametrize(("algorithm", "size"), [("sha384", 48), ("sha512", 64)])
def test_other_sha2_imprints_are_granted(
    tsa: TimeStampAuthority, algorithm: str, size: int
) -> None:
    digest = bytes(range(size))
    reply = tsa.respond(_request(message_imprint=_imprint(algorithm, digest), cert_req=True))
    response = rfc3161_client.decode_timestamp_response(reply)
    verifier = rfc3161_client.VerifierBuilder(roots=[tsa.ca_certificate]).build()
    assert verifier.verify(response, digest)


@pytest.mark.parametrize(
    ("request_der", "fail_info"),
    [
        (b"", "bad_data_format"),
        (b"\x30\x03\x02\x01\x01", "bad_data_format"),
        (b"GET / HTTP/1.1\r\n\r\n", "bad_data_format"),
        (_request()[:-3], "bad_data_format"),
        (_request() + b"\x00", "bad_data_format"),
        ("not bytes", "bad_data_format"),
        (bytes(20_000), "bad_data_format"),
        (_request(version="v2"), "bad_request"),
        (_request(message_imprint=_imprint("md5", bytes(16))), "bad_alg"),
        (_request(message_imprint=_imprint("sha1", bytes(20))), "bad_alg"),
        (_request(message_imprint=_imprint("sha256", bytes(31))), "bad_data_format"),
        (_request(req_policy="1.2.3.4"), "unaccepted_policy"),
        (
            _request(extensions=[{"extn_id": "1.2.3", "critical": False, "extn_value": b""}]),
            "unaccepted_extensions",
        ),
    ],
    ids=[
        "empty",
        "not-a-request",
        "http-text",
        "truncated",
        "trailing-byte",
        "str",
        "oversized",
        "version-2",
        "md5",
        "sha1",
        "short-digest",
        "other-policy",
        "extension",
    ],
)
def test_bad_requests_get_a_rejection_not_an_exception(
    tsa: TimeStampAuthority, request_der: bytes, fail_info: str
) -> None:
    response = TimestampResponse.from_der(tsa.respond(request_der))
    assert response.status == "rejection"
    assert response.fail_info == (fail_info,)
    assert response.status_text
    assert response.token is None


def test_openssl_reads_a_rejection(tsa: TimeStampAuthority, tmp_path: Path) -> None:
    (tmp_path / "rejected.tsr").write_bytes(
        tsa.respond(_request(message_imprint=_imprint("md5", bytes(16))))
    )
    result = subprocess.run(
        ["openssl", "ts", "-reply", "-in", str(tmp_path / "rejected.tsr"), "-text"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Status: Rejected." in result.stdout
    assert "unrecognized or unsupported algorithm" in result.stdout


def test_a_failing_clock_gets_system_failure(tsa: TimeStampAuthority) -> None:
    naive = TimeStampAuthority(
        tsa.key, tsa.certificate, tsa.ca_certificate, clock=lambda: datetime(2030, 1, 1)
    )
    response = TimestampResponse.from_der(naive.respond(build_request(DIGEST)))
    assert response.status == "rejection"
    assert response.fail_info == ("system_failure",)
    assert "time zone" in response.status_text
    with pytest.raises(TimestampAuthorityError, match="system_failure"):
        naive.stamp(DIGEST)


def test_stamp_refuses_a_clock_outside_the_certificate(tsa: TimeStampAuthority) -> None:
    early = TimeStampAuthority(
        tsa.key,
        tsa.certificate,
        tsa.ca_certificate,
        clock=lambda: tsa.certificate.not_valid_before_utc - timedelta(days=1),
    )
    with pytest.raises(TimestampAuthorityError, match="outside the validity"):
        early.stamp(DIGEST)


def test_stamp_refuses_a_digest_that_is_not_sha256(tsa: TimeStampAuthority) -> None:
    with pytest.raises(TimestampAuthorityError, match="32 bytes of SHA-256"):
        tsa.stamp(DIGEST[:16])
    with pytest.raises(TimestampAuthorityError, match="32 bytes of SHA-256"):
        tsa.stamp(DIGEST.hex())  # type: ignore[arg-type]


def test_tsa_refuses_a_mismatched_or_unsuitable_key(
    ca: EvidenceCA, tsa: TimeStampAuthority
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TimestampAuthorityError, match="does not belong to the TSA key"):
        TimeStampAuthority(other, tsa.certificate, ca.certificate)
    with pytest.raises(TimestampAuthorityError, match="P-256"):
        TimeStampAuthority(ec.generate_private_key(ec.SECP384R1()), tsa.certificate, ca.certificate)
    with pytest.raises(TimestampAuthorityError, match="dotted object identifier"):
        TimeStampAuthority(tsa.key, tsa.certificate, ca.certificate, policy_oid="policy-1")
    with pytest.raises(TimestampAuthorityError, match="accuracy"):
        TimeStampAuthority(tsa.key, tsa.certificate, ca.certificate, accuracy_seconds=0)
    assert issubclass(TimestampAuthorityError, GatewayError)


# --- over HTTP -----------------------------------------------------------------------------


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


def _exchange(url: str, method: str, content_type: str, body: bytes) -> tuple[int, str, bytes]:
    """Send one raw HTTP request; return the status, content type and body of the answer."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        connection.request(method, "/", body=body, headers={"Content-Type": content_type})
        answer = connection.getresponse()
        return answer.status, answer.headers.get_content_type(), answer.read()
    finally:
        connection.close()


def test_http_server_refuses_what_is_not_a_query(server: TsaHttpServer) -> None:
    status, _, _ = _exchange(server.url, "POST", "text/plain", build_request(DIGEST))
    assert status == 415
    status, _, _ = _exchange(server.url, "GET", QUERY_TYPE, b"")
    assert status == 501


def test_http_server_answers_a_bad_query_with_a_rejection(server: TsaHttpServer) -> None:
    status, content_type, body = _exchange(server.url, "POST", QUERY_TYPE, b"\x30\x00")
    assert (status, content_type) == (200, REPLY_TYPE)
    assert TimestampResponse.from_der(body).status == "rejection"


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


def test_server_reports_a_port_in_use(tsa: TimeStampAuthority, server: TsaHttpServer) -> None:
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(TimestampAuthorityError, match="cannot listen"):
        TsaHttpServer(tsa, "127.0.0.1", port)
