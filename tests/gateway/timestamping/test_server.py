"""The TSA's HTTP front: queries answered, everything else refused with the right status."""

from __future__ import annotations

import http.client
import urllib.parse

import pytest

from evidence.hashing import sha256
from evidence.timestamp import TimestampResponse
from gateway.errors import TimestampAuthorityError
from gateway.timestamping import (
    QUERY_TYPE,
    REPLY_TYPE,
    TimeStampAuthority,
    TsaHttpServer,
    build_request,
)

DIGEST = sha256(b"checkpoint: City Hospital No. 1 ledger, size 7")


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



def test_server_reports_a_port_in_use(tsa: TimeStampAuthority, server: TsaHttpServer) -> None:
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(TimestampAuthorityError, match="cannot listen"):
        TsaHttpServer(tsa, "127.0.0.1", port)

