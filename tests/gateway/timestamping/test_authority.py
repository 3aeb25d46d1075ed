"""The gateway's own TSA: tokens that verify as a court would check them, and refusals."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc3161_client
from asn1crypto import tsp
from cryptography.hazmat.primitives.asymmetric import ec

from evidence.hashing import sha256
from evidence.timestamp import TimestampResponse, TimestampToken, verify_timestamp
from gateway.errors import GatewayError, TimestampAuthorityError
from gateway.pki.ca import EvidenceCA
from gateway.timestamping import DEFAULT_POLICY_OID, TimeStampAuthority, build_request

DIGEST = sha256(b"checkpoint: City Hospital No. 1 ledger, size 7")


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



# --- the TSA itself ------------------------------------------------------------------------


def test_stamp_returns_a_reply_that_verifies(tsa: TimeStampAuthority) -> None:
    reply = tsa.stamp(DIGEST)
    info = verify_timestamp(reply, DIGEST, tsa.ca_certificate)
    assert info.policy == DEFAULT_POLICY_OID
    assert info.nonce is not None
    assert abs(info.gen_time - datetime.now(UTC)) < timedelta(minutes=1)


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

