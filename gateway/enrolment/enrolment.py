"""Badge enrolment: a one-time code issued here, the badge's own public key registered by it.

The gateway never makes or holds a badge's private key (decision 1900). ``issue_code``
gives the enrolling officer a short-lived code; the badge proves the code and its new key
in one signed request; ``accept_request`` registers the key, records who enrolled it in the
ledger, and answers with what the badge needs, sealed under the code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from evidence.canonical import CanonicalValue
from evidence.enrolment import (
    EnrolmentRequest,
    KeyOrigin,
    code_digest,
    fingerprint,
    new_code,
    seal_answer,
)
from evidence.hashing import sha256
from evidence.identifiers import validate_badge_id
from gateway.broker.accounts import refuse_reserved
from gateway.broker.config import hash_broker_password
from gateway.broker.passwords import BadgePasswords
from gateway.datadir import GatewayDataDir
from gateway.enrolment.nonces import NonceBook
from gateway.errors import CertificateError, EnrolmentError
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import open_ledger
from gateway.naming import check_name
from gateway.pki.ca import EvidenceCA
from gateway.storage import Storage
from gateway.storage.badges import EnrolledBadge
from gateway.storage.enrolment_codes import EnrolmentCode

DEFAULT_CODE_SECONDS = 600
"""How long a code can be used: ten minutes, time to walk to the badge and type it."""
MAX_CODE_SECONDS = 3600
_RECENT_NS = 24 * 3600 * 10**9
"""Codes this recent are weighed against a request, so an old one is named as expired or used."""


@dataclass(frozen=True)
class IssuedCode:
    """A one-time enrolment code, as shown to the enrolling officer (and nowhere kept)."""

    code: str
    badge_id: str
    rotate: bool
    expires_at_ns: int

    def __repr__(self) -> str:
        # the code is a secret for its ten minutes: never in a traceback or a log line
        return f"IssuedCode(badge_id={self.badge_id!r}, rotate={self.rotate})"


@dataclass(frozen=True)
class Acceptance:
    """A badge enrolled from its request: the record, who enrolled it, and the sealed answer."""

    enrolled: EnrolledBadge
    operator: str
    fingerprint: str
    answer: bytes


def issue_code(
    data_dir: GatewayDataDir,
    badge_id: str,
    *,
    wearer: str = "",
    location: str = "",
    broker_host: str = "localhost",
    broker_port: int = 8883,
    operator: str = "cli",
    rotate: bool = False,
    seconds: int = DEFAULT_CODE_SECONDS,
) -> IssuedCode:
    """Issue a one-time code with which ``badge_id`` enrols its own key (or a new one).

    Refused at once when the badge is enrolled already and ``rotate`` is not given, or is
    not enrolled and ``rotate`` is, or when the id is one the gateway's own broker accounts
    use (``refuse_reserved``). Only the code's digest is kept.
    """
    if not operator.strip():
        raise EnrolmentError("say who enrols the badge (--operator): the custody log records it")
    validate_badge_id(badge_id)
    refuse_reserved(data_dir, badge_id)
    wearer, location = check_name(wearer, "wearer"), check_name(location, "location")
    check_name(operator, "operator")
    if not 60 <= seconds <= MAX_CODE_SECONDS:
        raise EnrolmentError(
            f"an enrolment code lasts 60 to {MAX_CODE_SECONDS} seconds, not {seconds}"
        )
    storage = data_dir.storage()
    try:
        _check_enrolment_state(storage, badge_id, rotate)
        code = new_code()
        now = time.time_ns()
        storage.enrolment_codes.add(
            EnrolmentCode(
                digest=code_digest(code),
                badge_id=badge_id,
                rotate=rotate,
                wearer=wearer,
                location=location,
                operator=operator,
                broker_host=broker_host,
                broker_port=broker_port,
                issued_at_ns=now,
                expires_at_ns=now + seconds * 10**9,
            )
        )
    finally:
        storage.close()
    return IssuedCode(code, badge_id, rotate, now + seconds * 10**9)


def _check_enrolment_state(storage: Storage, badge_id: str, rotate: bool) -> None:
    try:
        storage.badges.get(badge_id)
    except EnrolmentError:
        enrolled = False
    else:
        enrolled = True
    if enrolled and not rotate:
        raise EnrolmentError(
            f"badge {badge_id} is already enrolled; use --rotate to give it a new key"
        )
    if rotate and not enrolled:
        raise EnrolmentError(f"badge {badge_id} is not enrolled, so it has no key to rotate")


def accept_request(
    data_dir: GatewayDataDir, data: bytes, nonces: NonceBook, *, now_ns: int | None = None
) -> Acceptance:
    """Enrol the key a badge's request proves, or raise EnrolmentError (nothing enrolled).

    The request must carry a nonce this gateway issued (once), be signed by the key it
    names, prove a code issued for the same badge id that is neither used nor expired, and
    name a key no badge has had, and carry a CSR for the badge's broker certificate signed
    by the P-256 key it names and naming the badge. A code presented for another badge id
    is spent. ``now_ns`` is the gateway time to judge the code's expiry by (default: now).
    """
    request = EnrolmentRequest.from_bytes(data)
    if not nonces.take(request.nonce):
        raise EnrolmentError(
            "the request's nonce was not issued by this gateway or was used or has expired; "
            "start the enrolment again"
        )
    if request.key_origin is KeyOrigin.GATEWAY_GENERATED:
        raise EnrolmentError("a badge enrols only a key it made itself, not a gateway-made one")
    storage = data_dir.storage()
    try:
        now = time.time_ns() if now_ns is None else now_ns
        code = _proven_code(storage, request, now)
        ca = data_dir.evidence_ca()
        certificate = _broker_certificate(ca, request)
        with storage.transaction():
            passwords = BadgePasswords.of(data_dir)
            enrolled, password = _register(
                storage, passwords, request, code, now=now, certificate=certificate
            )
            custody = CustodyLog(open_ledger(data_dir, storage))
            _record(custody, request, code, enrolled, certificate)
    finally:
        storage.close()
    answer = _answer(data_dir, request, code, enrolled, password=password, certificate=certificate)
    return Acceptance(
        enrolled,
        code.operator,
        fingerprint(request.public_key),
        seal_answer(answer, request, code.digest),
    )


def _proven_code(storage: Storage, request: EnrolmentRequest, now: int) -> EnrolmentCode:
    """The usable code the request proves; EnrolmentError saying why there is none."""
    codes = storage.enrolment_codes
    proven = next(
        (code for code in codes.recent(now - _RECENT_NS) if request.proves(code.digest)), None
    )
    if proven is None:
        raise EnrolmentError(
            "the enrolment code is wrong: it matches no code issued in the last 24 hours; "
            "check what was typed, or issue a new one with 'gateway enroll'"
        )
    if proven.used_at_ns is not None:
        raise EnrolmentError(
            "this enrolment code was used already; a code enrols once: issue a new one"
        )
    if proven.expires_at_ns <= now:
        raise EnrolmentError(
            "this enrolment code has expired; issue a new one with 'gateway enroll'"
        )
    if proven.badge_id != request.badge_id:
        codes.spend(proven.digest, now, f"refused: presented for badge {request.badge_id}")
        raise EnrolmentError(
            f"this enrolment code was issued for badge {proven.badge_id}, not for "
            f"{request.badge_id}; it is spent now: issue a new one for the right badge"
        )
    return proven


def _register(
    storage: Storage,
    passwords: BadgePasswords,
    request: EnrolmentRequest,
    code: EnrolmentCode,
    *,
    now: int,
    certificate: bytes,
) -> tuple[EnrolledBadge, str]:
    """Register the request's key under the code's terms; spend the code. Returns the
    enrolment and the badge's new broker password, derived from its key so that the running
    gateway can give the broker this login (decision 1704)."""
    holder = storage.badges.has_key(request.public_key)
    if holder is not None:
        raise EnrolmentError(
            f"this public key is enrolled already (for badge {holder}); a badge must make a "
            "new key for each enrolment"
        )
    _check_enrolment_state(storage, request.badge_id, code.rotate)
    password = passwords.password(request.badge_id, request.public_key.raw)
    enrolled = storage.badges.enroll(
        request.badge_id,
        request.public_key,
        hash_broker_password(password),
        wearer=code.wearer,
        location=code.location,
        operator=code.operator,
        rotate=code.rotate,
        key_origin=request.key_origin.value,
        tls_certificate=certificate,
    )
    if not storage.enrolment_codes.spend(code.digest, now, "enrolled"):
        raise EnrolmentError("this enrolment code was used already; a code enrols once")
    return enrolled, password


def _broker_certificate(ca: EvidenceCA, request: EnrolmentRequest) -> bytes:
    """The badge's broker certificate (DER), issued by the evidence CA from its CSR."""
    try:
        csr = x509.load_der_x509_csr(request.tls_csr)
    except ValueError:
        raise EnrolmentError(
            "the badge's certificate request is not a DER PKCS#10 request"
        ) from None
    try:
        issued = ca.issue_client_certificate(request.badge_id, csr)
    except CertificateError as error:
        raise EnrolmentError(f"no broker certificate: {error}") from None
    return issued.public_bytes(Encoding.DER)


def _record(
    custody: CustodyLog,
    request: EnrolmentRequest,
    code: EnrolmentCode,
    enrolled: EnrolledBadge,
    certificate: bytes,
) -> None:
    """The ledger entry a court reads: the key, how it was made, for whom, by whom."""
    custody.record(
        code.operator,
        "enrol" if enrolled.key_generation == 1 else "key-rotation",
        enrolled.badge_id,
        detail={
            "key_generation": enrolled.key_generation,
            "public_key": enrolled.public_key.raw,
            "algorithm": request.public_key.algorithm,
            "key_origin": request.key_origin.value,
            "wearer": enrolled.wearer,
            "location": enrolled.location,
            "proof_of_possession": request.signature,
            "tls_certificate_sha256": sha256(certificate),
        },
    )


def _answer(
    data_dir: GatewayDataDir,
    request: EnrolmentRequest,
    code: EnrolmentCode,
    enrolled: EnrolledBadge,
    *,
    password: str,
    certificate: bytes,
) -> dict[str, CanonicalValue]:
    """What the badge needs: trust anchors, its broker account and its broker certificate."""
    ca = data_dir.evidence_ca()
    return {
        "badge_id": enrolled.badge_id,
        "hospital": ca.hospital_name,
        "key_generation": enrolled.key_generation,
        "key_origin": request.key_origin.value,
        "custodian_key": data_dir.custodian_public_key().pem(),
        "gateway_key": data_dir.signing_key().public_key.pem(),
        "evidence_ca": ca.certificate.public_bytes(Encoding.PEM),
        "client_certificate": x509.load_der_x509_certificate(certificate).public_bytes(
            Encoding.PEM
        ),
        "broker": {
            "host": code.broker_host,
            "port": code.broker_port,
            "username": enrolled.badge_id,
            "password": password,
        },
    }


def revoke_badge(data_dir: GatewayDataDir, badge_id: str, *, operator: str, reason: str) -> None:
    """Revoke ``badge_id``, recorded as an enrolment event and a ``revoke`` custody entry.

    The intake refuses the badge at once; a running gateway deletes its broker account
    within a poll (decision 1703), closing its session and refusing its logins.
    """
    if not reason.strip():
        raise EnrolmentError("say why the badge is revoked (lost, stolen, retired...)")
    storage = data_dir.storage()
    try:
        custody = CustodyLog(open_ledger(data_dir, storage))
        storage.badges.revoke(badge_id, operator=operator, reason=reason)
        custody.record(operator, "revoke", badge_id, reason)
    finally:
        storage.close()


def lift_cutoff(data_dir: GatewayDataDir, badge_id: str, *, operator: str) -> None:
    """Lift the badge's cut-off (decision 1702), recorded as a ``lift-cut-off`` custody entry;
    a running gateway enables its broker account again at once."""
    storage = data_dir.storage()
    try:
        custody = CustodyLog(open_ledger(data_dir, storage))
        lifted = storage.cutoffs.lift(badge_id)
        if lifted is None:
            raise EnrolmentError(f"badge {badge_id} is not cut off")
        custody.record(
            operator, "lift-cut-off", badge_id, detail={"cut_off_at_ns": lifted.cut_off_at_ns}
        )
    finally:
        storage.close()
