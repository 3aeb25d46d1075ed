"""The badge's half of enrolment: make its own key, prove it and the code, keep the answer.

The private key is made here, written 0600 into the badge's enrolment directory before
anything is sent, and never leaves the badge; the gateway sees only the public key and
a signed request (decision 1900). A re-enrolment (``rotate``) makes a new key beside the
old one and puts it in the old one's place only once the gateway has accepted it.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from badge.errors import EnrolmentError
from evidence.bundle import TLS_KEY_FILE, EnrolmentBundle
from evidence.enrolment import EnrolmentRequest, KeyOrigin, normalise_code, open_answer
from evidence.errors import EvidenceError
from evidence.identifiers import validate_badge_id
from evidence.keyfiles import read_secret_file, write_secret_file
from evidence.keys import BadgeIdentity, Signer, SigningKey

KEY_FILE = "badge.key"
NEXT_KEY_FILE = "badge.key.next"
TLS_NEXT_KEY_FILE = "tls.key.next"
"""A rotation's new key, until the gateway has accepted it."""
MANIFEST_FILE = "badge.json"
HTTP_SECONDS = 15.0
MAX_ANSWER_BYTES = 1 << 20


class EnrolmentTransport(Protocol):
    """How the badge reaches the gateway's enrolment endpoint."""

    def nonce(self) -> bytes:
        """A fresh nonce from the gateway."""
        ...

    def submit(self, request: bytes) -> bytes:
        """Send the signed request; the gateway's sealed answer, or EnrolmentError."""
        ...


class HttpTransport:
    """The enrolment endpoint at ``url`` (``gateway enroll`` prints it)."""

    def __init__(self, url: str) -> None:
        """Reach the gateway at ``url``: http:// or https://."""
        if not url.startswith(("http://", "https://")):
            raise EnrolmentError(f"the gateway address {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")

    def nonce(self) -> bytes:
        """GET the nonce."""
        # the scheme was checked in __init__: http or https only
        return self._call(urllib.request.Request(f"{self.url}/enrol/v1/nonce"))  # noqa: S310

    def submit(self, request: bytes) -> bytes:
        """POST the request."""
        return self._call(
            urllib.request.Request(  # noqa: S310 - http or https, checked in __init__
                f"{self.url}/enrol/v1/request",
                data=request,
                headers={"content-type": "application/cbor"},
                method="POST",
            )
        )

    def _call(self, request: urllib.request.Request) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=HTTP_SECONDS) as response:  # noqa: S310
                return bytes(response.read(MAX_ANSWER_BYTES))
        except urllib.error.HTTPError as error:
            reason = error.read(2000).decode("utf-8", "replace") or error.reason
            raise EnrolmentError(f"the gateway refused the enrolment: {reason}") from None
        except (urllib.error.URLError, OSError) as error:
            why = getattr(error, "reason", error)
            raise EnrolmentError(f"cannot reach the gateway at {self.url}: {why}") from None


def _check_state(directory: Path, rotate: bool) -> None:
    """Refuse a second enrolment without ``rotate``, and a rotation of nothing."""
    enrolled = (directory / MANIFEST_FILE).exists()
    if enrolled and not rotate:
        raise EnrolmentError(
            f"this badge is enrolled already ({directory}); use --rotate to enrol a new key"
        )
    if rotate and not enrolled:
        raise EnrolmentError("this badge is not enrolled yet, so it has no key to rotate")


def enrolment_key(directory: Path, *, rotate: bool = False) -> SigningKey:
    """The key this enrolment proves: made here (0600) on first use, then re-used until
    the gateway accepts it, so a failed attempt can be tried again with the same key."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    _check_state(directory, rotate)
    path = directory / (NEXT_KEY_FILE if rotate else KEY_FILE)
    if path.exists():
        return SigningKey.load(path)
    key = SigningKey.generate()
    key.save(path)
    return key


def tls_request(directory: Path, badge_id: str, *, rotate: bool = False) -> bytes:
    """The CSR (DER) for the badge's broker certificate, over a P-256 TLS key made here (0600).

    The TLS key only opens the broker connection; it never signs evidence.
    """
    path = directory / (TLS_NEXT_KEY_FILE if rotate else TLS_KEY_FILE)
    if path.exists():
        key = serialization.load_pem_private_key(read_secret_file(path), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise EnrolmentError(f"{path} does not hold a P-256 key")
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        write_secret_file(
            path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, badge_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def enrolled_badge_id(directory: Path) -> str:
    """The id of the badge enrolled in ``directory``."""
    return EnrolmentBundle.load(directory).identity.badge_id


def enrol(
    directory: Path,
    badge_id: str,
    code: str,
    transport: EnrolmentTransport,
    *,
    rotate: bool = False,
    hardware: Signer | None = None,
) -> EnrolmentBundle:
    """Enrol this badge's own key with the gateway and keep the answer in ``directory``.

    The key is made here as a file, or is ``hardware``'s (a key made in the badge's token).
    """
    origin = KeyOrigin.BADGE_GENERATED if hardware is None else KeyOrigin.BADGE_HARDWARE
    try:
        normalise_code(code)
        validate_badge_id(badge_id)
        if hardware is None:
            key: Signer = enrolment_key(directory, rotate=rotate)
        else:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _check_state(directory, rotate)
            key = hardware
        csr = tls_request(directory, badge_id, rotate=rotate)
        request = EnrolmentRequest.create(
            badge_id, key, code, transport.nonce(), origin, tls_csr=csr
        )
        answer = open_answer(transport.submit(request.to_bytes()), request, code)
        bundle = EnrolmentBundle.from_answer(BadgeIdentity(badge_id, key), answer, origin)
        if hardware is not None:
            (directory / KEY_FILE).unlink(missing_ok=True)  # an earlier file key is retired
        bundle.write(directory)
    except EvidenceError as error:
        raise EnrolmentError(str(error)) from None
    (directory / NEXT_KEY_FILE).unlink(missing_ok=True)
    if rotate:
        (directory / TLS_NEXT_KEY_FILE).replace(directory / TLS_KEY_FILE)
    return bundle
