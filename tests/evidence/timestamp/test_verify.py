"""RFC 3161 tokens: our verifier, checked against openssl and rfc3161-client on real tokens."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc3161_client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.errors import TimestampError, VerificationError
from evidence.hashing import sha256
from evidence.timestamp import (
    TimestampResponse,
    TimestampToken,
    verify_timestamp,
)
from gateway.pki.ca import EvidenceCA
from gateway.timestamping import DEFAULT_POLICY_OID, TimeStampAuthority, build_request

DIGEST = sha256(b"checkpoint: City Hospital No. 1 ledger, size 1024")
OTHER_DIGEST = sha256(b"checkpoint: City Hospital No. 1 ledger, size 1025")
NOW = datetime.now(UTC).replace(microsecond=654321)


@pytest.fixture(scope="module")
def ca() -> EvidenceCA:
    # made at NOW, not when the module's tests start, however long collection took
    return EvidenceCA.create("City Hospital No. 1", now=NOW)


@pytest.fixture(scope="module")
def tsa(ca: EvidenceCA) -> TimeStampAuthority:
    key, certificate = ca.issue_tsa_certificate("City Hospital No. 1 Gateway TSA", now=NOW)
    return TimeStampAuthority(key, certificate, ca.certificate, clock=lambda: NOW)


@pytest.fixture(scope="module")
def reply(tsa: TimeStampAuthority) -> bytes:
    return tsa.respond(build_request(DIGEST, nonce=4242))


def _pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=30, check=False
    )


def _openssl_verify(
    tmp_path: Path, reply: bytes, digest: bytes, ca: x509.Certificate, *untrusted: x509.Certificate
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "resp.tsr").write_bytes(reply)
    args = ["ts", "-verify", "-digest", digest.hex(), "-sha256", "-in", str(tmp_path / "resp.tsr")]
    args += ["-CAfile", str(_pem(tmp_path / "ca.crt", ca))]
    if untrusted:
        args += ["-untrusted", str(_pem(tmp_path / "tsa.crt", *untrusted))]
    return _openssl(*args)


def _tsa_certificate(
    ca: EvidenceCA,
    *,
    usage: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.TIME_STAMPING,),
    critical: bool = True,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> tuple[ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, x509.Certificate]:
    """A TSA certificate under ``ca`` with the extended key usage given (None: without one)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = datetime.now(UTC) - timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd TSA")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usage)), critical=critical)
    return key, builder.sign(ca.key, hashes.SHA256())


# --- a token from our TSA verifies everywhere ------------------------------------------------


def test_token_verifies_with_our_verifier(tsa: TimeStampAuthority, reply: bytes) -> None:
    info = verify_timestamp(reply, DIGEST, tsa.ca_certificate, expected_nonce=4242)
    assert info.digest == DIGEST
    assert info.gen_time == NOW.replace(microsecond=0)
    assert info.accuracy == timedelta(seconds=1)
    assert info.policy == DEFAULT_POLICY_OID
    assert info.tsa_name == tsa.certificate.subject.rfc4514_string()
    assert info.nonce == 4242
    assert not info.ordering
    assert info.serial > 0


def test_bare_token_verifies_like_the_reply(tsa: TimeStampAuthority, reply: bytes) -> None:
    token = TimestampToken.from_der(reply)
    assert set(token.certificates) == {tsa.certificate, tsa.ca_certificate}
    assert verify_timestamp(token.der, DIGEST, [tsa.ca_certificate]) == token.info


def test_openssl_verifies_our_token(tsa: TimeStampAuthority, reply: bytes, tmp_path: Path) -> None:
    result = _openssl_verify(tmp_path, reply, DIGEST, tsa.ca_certificate, tsa.certificate)
    assert result.returncode == 0, result.stderr
    assert "Verification: OK" in result.stdout
    # The token carries its certificates, so openssl needs only the CA.
    assert _openssl_verify(tmp_path, reply, DIGEST, tsa.ca_certificate).returncode == 0
    # ... and openssl really checks the digest.
    wrong = _openssl_verify(tmp_path, reply, OTHER_DIGEST, tsa.ca_certificate)
    assert wrong.returncode != 0


def test_openssl_verifies_a_token_without_certificates_given_the_tsa_cert(
    tsa: TimeStampAuthority, tmp_path: Path
) -> None:
    bare = tsa.respond(build_request(DIGEST, cert_req=False))
    assert TimestampToken.from_der(bare).certificates == ()
    result = _openssl_verify(tmp_path, bare, DIGEST, tsa.ca_certificate, tsa.certificate)
    assert result.returncode == 0, result.stderr
    with pytest.raises(TimestampError, match="neither in the token nor among"):
        verify_timestamp(bare, DIGEST, tsa.ca_certificate)
    info = verify_timestamp(bare, DIGEST, tsa.ca_certificate, certificates=[tsa.certificate])
    assert info.digest == DIGEST


def test_openssl_prints_the_reply(reply: bytes, tmp_path: Path) -> None:
    (tmp_path / "resp.tsr").write_bytes(reply)
    result = _openssl("ts", "-reply", "-in", str(tmp_path / "resp.tsr"), "-text")
    assert result.returncode == 0, result.stderr
    assert "Status: Granted." in result.stdout
    assert f"Policy OID: {DEFAULT_POLICY_OID}" in result.stdout
    assert "Hash Algorithm: sha256" in result.stdout
    assert "Accuracy: 0x01 seconds" in result.stdout
    assert "Nonce: 0x1092" in result.stdout
    assert "TSA: DirName:/CN=City Hospital No. 1 Gateway TSA/O=City Hospital No. 1" in result.stdout


def test_rfc3161_client_verifies_our_token(tsa: TimeStampAuthority, reply: bytes) -> None:
    response = rfc3161_client.decode_timestamp_response(reply)
    verifier = rfc3161_client.VerifierBuilder(roots=[tsa.ca_certificate], nonce=4242).build()
    assert verifier.verify(response, DIGEST)
    assert response.tst_info.serial_number == TimestampToken.from_der(reply).info.serial
    with pytest.raises(rfc3161_client.VerificationError):
        verifier.verify(response, OTHER_DIGEST)


# --- tokens from other implementations verify with ours --------------------------------------

_OPENSSL_TSA_CONFIG = """
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = {directory}/serial
crypto_device = builtin
signer_cert = {directory}/signer.crt
certs = {directory}/ca.crt
signer_key = {directory}/signer.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:2, millisecs:500
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = {ess_alg}
"""


@pytest.mark.parametrize(
    ("key_type", "ess_alg"), [("rsa", "sha1"), ("rsa", "sha256"), ("ec", "sha1"), ("ec", "sha256")]
)
def test_openssl_tsa_tokens_verify_with_ours(
    ca: EvidenceCA, tmp_path: Path, key_type: str, ess_alg: str
) -> None:
    """An independent TSA (openssl ts -reply): RSA or ECDSA, ESSCertID or ESSCertIDv2."""
    signer_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        rsa.generate_private_key(65537, 2048)
        if key_type == "rsa"
        else ec.generate_private_key(ec.SECP384R1())
    )
    key, certificate = _tsa_certificate(ca, key=signer_key)
    (tmp_path / "signer.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    _pem(tmp_path / "signer.crt", certificate)
    _pem(tmp_path / "ca.crt", ca.certificate)
    (tmp_path / "serial").write_text("01\n")
    config = tmp_path / "ts.cnf"
    config.write_text(_OPENSSL_TSA_CONFIG.format(directory=tmp_path, ess_alg=ess_alg))
    query = tmp_path / "req.tsq"
    query.write_bytes(build_request(DIGEST, nonce=77))
    made = _openssl(
        "ts", "-reply", "-config", str(config), "-queryfile", str(query),
        "-out", str(tmp_path / "resp.tsr"),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    reply = (tmp_path / "resp.tsr").read_bytes()

    info = verify_timestamp(reply, DIGEST, ca.certificate, expected_nonce=77)
    assert info.policy == "1.2.3.4.1"
    assert info.accuracy == timedelta(seconds=2, milliseconds=500)
    assert info.ordering
    assert info.tsa_name == "CN=Odd TSA"
    with pytest.raises(TimestampError, match="different digest"):
        verify_timestamp(reply, OTHER_DIGEST, ca.certificate)


# --- what must fail, and how it says so ------------------------------------------------------


def test_token_for_another_digest_fails(tsa: TimeStampAuthority, reply: bytes) -> None:
    with pytest.raises(TimestampError, match="time-stamp token is for a different digest"):
        verify_timestamp(reply, OTHER_DIGEST, tsa.ca_certificate)


@pytest.mark.parametrize("hospital", ["Other Hospital", "City Hospital No. 1"])
def test_token_from_a_foreign_tsa_fails(
    tsa: TimeStampAuthority, hospital: str, tmp_path: Path
) -> None:
    """A TSA under another CA, even one that copies our CA's name, is not trusted."""
    foreign_ca = EvidenceCA.create(hospital)
    key, certificate = foreign_ca.issue_tsa_certificate("Impostor TSA")
    foreign = TimeStampAuthority(key, certificate, foreign_ca.certificate)
    reply = foreign.respond(build_request(DIGEST))
    assert verify_timestamp(reply, DIGEST, foreign_ca.certificate).digest == DIGEST
    with pytest.raises(
        TimestampError, match="signed by a certificate not issued by the trusted CA"
    ):
        verify_timestamp(reply, DIGEST, tsa.ca_certificate)
    assert _openssl_verify(tmp_path, reply, DIGEST, tsa.ca_certificate).returncode != 0


def test_backdated_token_fails(ca: EvidenceCA, tsa: TimeStampAuthority) -> None:
    """A TSA whose clock is before its certificate's validity makes tokens that do not verify."""
    start = tsa.certificate.not_valid_before_utc
    early = TimeStampAuthority(
        tsa.key, tsa.certificate, ca.certificate, clock=lambda: start - timedelta(days=400)
    )
    reply = early.respond(build_request(DIGEST))
    with pytest.raises(TimestampError, match="outside the validity of certificate") as caught:
        verify_timestamp(reply, DIGEST, ca.certificate)
    assert "City Hospital No. 1 Gateway TSA" in str(caught.value)


def test_postdated_token_fails(ca: EvidenceCA) -> None:
    key, certificate = ca.issue_tsa_certificate("Short-lived TSA", validity=timedelta(days=1))
    late = TimeStampAuthority(
        key, certificate, ca.certificate, clock=lambda: NOW + timedelta(days=3)
    )
    reply = late.respond(build_request(DIGEST))
    with pytest.raises(TimestampError, match="back- or post-dated"):
        verify_timestamp(reply, DIGEST, ca.certificate)


@pytest.mark.parametrize(
    ("usage", "critical"),
    [
        (None, True),
        ((ExtendedKeyUsageOID.TIME_STAMPING,), False),
        ((ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.SERVER_AUTH), True),
        ((ExtendedKeyUsageOID.CODE_SIGNING,), True),
    ],
    ids=["no-eku", "non-critical", "extra-purpose", "other-purpose"],
)
def test_tsa_certificate_without_critical_time_stamping_eku_is_refused(
    ca: EvidenceCA, usage: Sequence[x509.ObjectIdentifier] | None, critical: bool
) -> None:
    key, certificate = _tsa_certificate(ca, usage=usage, critical=critical)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    odd = TimeStampAuthority(key, certificate, ca.certificate)
    reply = odd.respond(build_request(DIGEST))
    with pytest.raises(TimestampError, match="lacks the critical timeStamping-only extended key"):
        verify_timestamp(reply, DIGEST, ca.certificate)


def test_nonce_and_policy_must_match_when_given(tsa: TimeStampAuthority, reply: bytes) -> None:
    with pytest.raises(TimestampError, match="nonce 4242 is not the request's nonce 4243"):
        verify_timestamp(reply, DIGEST, tsa.ca_certificate, expected_nonce=4243)
    with pytest.raises(TimestampError, match=r"made under policy .* not 1\.2\.3"):
        verify_timestamp(reply, DIGEST, tsa.ca_certificate, expected_policy="1.2.3")
    without = tsa.respond(build_request(DIGEST))
    with pytest.raises(TimestampError, match="nonce None"):
        verify_timestamp(without, DIGEST, tsa.ca_certificate, expected_nonce=1)


def test_a_rejection_is_reported_with_its_reason(tsa: TimeStampAuthority) -> None:
    refused = tsa.respond(b"not a request")
    response = TimestampResponse.from_der(refused)
    assert response.status == "rejection"
    assert response.fail_info == ("bad_data_format",)
    assert response.token is None
    with pytest.raises(TimestampError, match=r"refused the request: rejection \(bad_data_format\)"):
        verify_timestamp(refused, DIGEST, tsa.ca_certificate)


def test_only_a_plain_grant_is_accepted(tsa: TimeStampAuthority, reply: bytes) -> None:
    # The status INTEGER is the ninth byte: 30 82 LL LL 30 03 02 01 <status>.
    assert reply[4:9] == bytes.fromhex("3003020100")
    modified = reply[:8] + b"\x01" + reply[9:]
    assert TimestampResponse.from_der(modified).status == "granted_with_mods"
    with pytest.raises(TimestampError, match="only granted is accepted"):
        verify_timestamp(modified, DIGEST, tsa.ca_certificate)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x30\x00", b"\x30\x80\x00\x00", b"\x30\x03\x02\x01", bytes(range(256))],
    ids=["empty", "zero", "empty-sequence", "indefinite", "truncated", "junk"],
)
def test_malformed_input_raises_our_error_only(tsa: TimeStampAuthority, data: bytes) -> None:
    with pytest.raises(TimestampError):
        verify_timestamp(data, DIGEST, tsa.ca_certificate)


def test_other_der_objects_are_not_tokens(tsa: TimeStampAuthority, reply: bytes) -> None:
    for data in (
        build_request(DIGEST),
        tsa.certificate.public_bytes(serialization.Encoding.DER),
        reply + b"\x00",
        reply[:-1],
    ):
        with pytest.raises(TimestampError):
            TimestampToken.from_der(data)
    with pytest.raises(TimestampError, match="must be bytes"):
        verify_timestamp("a string", DIGEST, tsa.ca_certificate)  # type: ignore[arg-type]
    with pytest.raises(TimestampError, match="32 bytes of SHA-256"):
        verify_timestamp(reply, DIGEST[:20], tsa.ca_certificate)


def test_timestamp_error_is_a_verification_error() -> None:
    assert issubclass(TimestampError, VerificationError)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), flip=st.integers(min_value=1, max_value=255))
def test_a_flipped_byte_anywhere_fails_with_our_error(
    tsa: TimeStampAuthority, reply: bytes, data: st.DataObject, flip: int
) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(reply) - 1), label="position")
    damaged = bytearray(reply)
    damaged[index] ^= flip
    with pytest.raises(TimestampError):
        verify_timestamp(bytes(damaged), DIGEST, tsa.ca_certificate, expected_nonce=4242)
