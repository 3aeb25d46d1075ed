"""The enrolment bundle: the badge's own key and what the gateway answered when it enrolled.

A directory (mode 0700) in the badge's data directory holding ``badge.key`` (the key the
badge made itself, 0600), ``badge.pub``, ``custodian.pub``, ``gateway-signing.pub``,
``evidence-ca.crt`` and ``badge.json`` (0600: badge id, hospital, key generation, how the
key was made, broker credentials), and for the broker ``tls.key`` (the badge's own P-256 TLS
key, 0600) with ``tls.crt`` (its certificate from the evidence CA). ``badge enroll`` writes
it (format v2); a v1 bundle,
written by a gateway that made the badge's key, still loads, its key named
``gateway-generated``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from evidence.canonical import CanonicalValue
from evidence.enrolment import KeyOrigin
from evidence.errors import EnrolmentProtocolError, KeyFileError
from evidence.identifiers import validate_badge_id
from evidence.keyfiles import (
    read_public_file,
    read_secret_file,
    write_public_file,
    write_secret_file,
)
from evidence.keys import (
    BadgeIdentity,
    CustodianPublicKey,
    Signer,
    SigningKey,
    SigningPublicKey,
)

BUNDLE_FORMAT = "medbadge.enrolment.v2"
LEGACY_FORMAT = "medbadge.enrolment.v1"
TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.crt"
"""Bundles a gateway wrote with a key it made (before badge-born keys)."""


@dataclass(frozen=True)
class BrokerCredentials:
    """How the badge reaches the hospital broker, and its own account there."""

    host: str
    port: int
    username: str
    password: str

    def __repr__(self) -> str:
        # never print the password, not even in a traceback or a log line
        return (
            f"BrokerCredentials(host={self.host!r}, port={self.port}, username={self.username!r})"
        )


@dataclass(frozen=True)
class EnrolmentBundle:
    """A badge's identity and trust anchors."""

    identity: BadgeIdentity
    hospital: str
    key_generation: int
    custodian_key: CustodianPublicKey
    gateway_key: SigningPublicKey
    evidence_ca_pem: bytes
    broker: BrokerCredentials
    key_origin: KeyOrigin = KeyOrigin.GATEWAY_GENERATED
    client_certificate_pem: bytes | None = None
    """The badge's broker certificate (for ``tls.key``), when the gateway issued one."""

    @classmethod
    def from_answer(
        cls, identity: BadgeIdentity, answer: dict[str, CanonicalValue], origin: KeyOrigin
    ) -> EnrolmentBundle:
        """The bundle from the gateway's (opened) enrolment answer and the badge's own key."""
        try:
            broker = answer["broker"]
            if not isinstance(broker, dict):
                raise TypeError("broker")
            where = Path("enrolment answer")
            bundle = cls(
                identity=identity,
                hospital=str(answer["hospital"]),
                key_generation=int(str(answer["key_generation"])),
                custodian_key=CustodianPublicKey.from_pem(_pem(answer, "custodian_key"), where),
                gateway_key=SigningPublicKey.from_pem(_pem(answer, "gateway_key"), where),
                evidence_ca_pem=_pem(answer, "evidence_ca"),
                broker=BrokerCredentials(
                    str(broker["host"]),
                    int(str(broker["port"])),
                    str(broker["username"]),
                    str(broker["password"]),
                ),
                key_origin=origin,
                client_certificate_pem=(
                    _pem(answer, "client_certificate") if "client_certificate" in answer else None
                ),
            )
        except (KeyError, TypeError, ValueError):
            raise EnrolmentProtocolError("the gateway's enrolment answer is incomplete") from None
        if answer.get("badge_id") != identity.badge_id:
            raise EnrolmentProtocolError(
                f"the gateway answered for badge {answer.get('badge_id')!r}, not "
                f"{identity.badge_id}"
            )
        return bundle

    def write(self, directory: Path) -> None:
        """Write the bundle into ``directory`` (created with mode 0700)."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        signer = self.identity.signing_key
        if isinstance(signer, SigningKey):  # a key in hardware has no file to write
            signer.save(directory / "badge.key")
        signer.public_key.save(directory / "badge.pub")
        self.custodian_key.save(directory / "custodian.pub")
        self.gateway_key.save(directory / "gateway-signing.pub")
        write_public_file(directory / "evidence-ca.crt", self.evidence_ca_pem)
        if self.client_certificate_pem is not None:
            write_public_file(directory / TLS_CERT_FILE, self.client_certificate_pem)
        manifest = {
            "format": BUNDLE_FORMAT,
            "badge_id": self.identity.badge_id,
            "hospital": self.hospital,
            "key_generation": self.key_generation,
            "key_origin": self.key_origin.value,
            "broker": {
                "host": self.broker.host,
                "port": self.broker.port,
                "username": self.broker.username,
                "password": self.broker.password,
            },
        }
        write_secret_file(directory / "badge.json", json.dumps(manifest, indent=2).encode())

    @classmethod
    def load(cls, directory: Path, signer: Signer | None = None) -> EnrolmentBundle:
        """Read a bundle, checking that its parts belong together.

        ``signer`` is the badge's key when it is held in hardware (no ``badge.key``); it
        must be the key the bundle was enrolled with.
        """
        manifest_path = directory / "badge.json"
        try:
            manifest = json.loads(read_secret_file(manifest_path))
            kind = manifest.get("format")
            if kind not in (BUNDLE_FORMAT, LEGACY_FORMAT):
                raise KeyFileError(f"{manifest_path} is not a {BUNDLE_FORMAT} bundle")
            origin = (
                KeyOrigin.GATEWAY_GENERATED
                if kind == LEGACY_FORMAT
                else KeyOrigin.parse(manifest["key_origin"])
            )
            broker = manifest["broker"]
            credentials = BrokerCredentials(
                str(broker["host"]),
                int(broker["port"]),
                str(broker["username"]),
                str(broker["password"]),
            )
            badge_id = validate_badge_id(manifest["badge_id"])
            hospital, generation = str(manifest["hospital"]), int(manifest["key_generation"])
        except (ValueError, KeyError, TypeError, AttributeError, EnrolmentProtocolError):
            raise KeyFileError(f"{manifest_path} is not a valid enrolment manifest") from None
        signing_key: Signer = signer or SigningKey.load(directory / "badge.key")
        if signing_key.public_key.raw != SigningPublicKey.load(directory / "badge.pub").raw:
            raise KeyFileError(f"the badge's key and badge.pub in {directory} do not match")
        return cls(
            identity=BadgeIdentity(badge_id, signing_key),
            hospital=hospital,
            key_generation=generation,
            custodian_key=CustodianPublicKey.load(directory / "custodian.pub"),
            gateway_key=SigningPublicKey.load(directory / "gateway-signing.pub"),
            evidence_ca_pem=read_public_file(directory / "evidence-ca.crt"),
            broker=credentials,
            key_origin=origin,
            client_certificate_pem=(
                read_public_file(directory / TLS_CERT_FILE)
                if (directory / TLS_CERT_FILE).exists()
                else None
            ),
        )


def _pem(answer: dict[str, CanonicalValue], name: str) -> bytes:
    value = answer[name]
    if not isinstance(value, bytes):
        raise TypeError(name)
    return value
