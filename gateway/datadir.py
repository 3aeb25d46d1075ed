"""The gateway's data directory: where the hospital's keys, evidence CA, TSA and database live."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from evidence.keyfiles import read_public_file, read_secret_file
from evidence.keys import CustodianPrivateKey, CustodianPublicKey, HpkeSuite, SigningKey
from gateway.config import GatewayConfig, TimestampSettings
from gateway.errors import GatewayConfigError, GatewayError
from gateway.pki.ca import EvidenceCA, write_certificate, write_private_key
from gateway.storage import Storage, StorageSettings, open_storage
from gateway.storage.s3_vault_settings import S3VaultSettings
from gateway.timestamping.authority import TimeStampAuthority
from gateway.timestamping.client import TsaClient
from gateway.timestamping.timestamper import Timestamper

TSA_NAME_SUFFIX = " Gateway TSA"
"""The TSA certificate's common name is the hospital's name followed by this."""


class DataDirError(GatewayError):
    """The gateway data directory is missing, not initialised, or already initialised."""


@dataclass(frozen=True)
class GatewayDataDir:
    """Paths inside a gateway data directory, and the operations that create and read it."""

    root: Path
    config_file: Path | None = None
    """The gateway.toml that names the storage, when not ``root / "gateway.toml"``."""

    @property
    def keys(self) -> Path:
        """Directory of the gateway signing key and the custodian key."""
        return self.root / "keys"

    @property
    def signing_key_path(self) -> Path:
        """The gateway's Ed25519 signing key (receipts, checkpoints)."""
        return self.keys / "gateway-signing.key"

    @property
    def signing_public_key_path(self) -> Path:
        """The gateway's public signing key, given to badges and courts."""
        return self.keys / "gateway-signing.pub"

    @property
    def custodian_key_path(self) -> Path:
        """The custodian's HPKE private key: the only key that opens footage."""
        return self.keys / "custodian.key"

    @property
    def custodian_public_key_path(self) -> Path:
        """The custodian's HPKE public key, given to badges."""
        return self.keys / "custodian.pub"

    @property
    def tsa_key_path(self) -> Path:
        """The private key of the gateway's own RFC 3161 time-stamping authority (P-256)."""
        return self.keys / "tsa.key"

    @property
    def tsa_certificate_path(self) -> Path:
        """The TSA's certificate, issued by the evidence CA (timeStamping usage only)."""
        return self.keys / "tsa.crt"

    @property
    def ca_dir(self) -> Path:
        """The hospital evidence CA (key and certificate)."""
        return self.root / "ca"

    @property
    def database_path(self) -> Path:
        """The gateway's SQLite database."""
        return self.root / "gateway.db"

    @property
    def vault_dir(self) -> Path:
        """The vault: every sealed segment the gateway holds, named by its SHA-256."""
        return self.root / "vault"

    @property
    def storage_settings(self) -> StorageSettings:
        """Where this gateway keeps its records and footage: ``[database]`` and ``[vault]``
        of gateway.toml, by default the SQLite file and the vault directory here."""
        config = GatewayConfig.load(self.root, self.config_file)
        vault: Path | S3VaultSettings = self.vault_dir
        if config.vault is not None:
            vault = S3VaultSettings(
                bucket=config.vault.bucket,
                endpoint=config.vault.endpoint,
                credentials_file=config.vault.credentials_file,
                retention_days=config.retention_days,
                region=config.vault.region,
                ca_file=config.vault.ca_file,
            )
        return StorageSettings(database=config.database_url or self.database_path, vault=vault)

    def is_initialised(self) -> bool:
        """True when ``gateway init`` has run here."""
        return self.signing_key_path.exists()

    def initialise(
        self, hospital: str, suite: HpkeSuite, custodian_passphrase: bytes | None
    ) -> None:
        """Create the hospital's keys, evidence CA and database; refuse to overwrite any."""
        if self.is_initialised():
            raise DataDirError(
                f"{self.root} is already initialised; choose another directory or remove it"
            )
        for directory in (self.root, self.keys, self.ca_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        custodian = CustodianPrivateKey.generate(suite)
        custodian.save(self.custodian_key_path, custodian_passphrase)
        custodian.public_key.save(self.custodian_public_key_path)
        ca = EvidenceCA.create(hospital)
        ca.save(self.ca_dir)
        self._issue_tsa(ca)
        open_storage(self.storage_settings).close()
        # written last: its presence is what marks the directory as initialised
        signing_key = SigningKey.generate()
        signing_key.public_key.save(self.signing_public_key_path)
        signing_key.save(self.signing_key_path)

    def require_initialised(self) -> None:
        """Raise DataDirError unless ``gateway init`` has run here."""
        if not self.is_initialised():
            raise DataDirError(
                f"{self.root} is not a gateway data directory; run 'gateway init' first"
            )

    def signing_key(self) -> SigningKey:
        """The gateway signing key."""
        self.require_initialised()
        return SigningKey.load(self.signing_key_path)

    def custodian_public_key(self) -> CustodianPublicKey:
        """The custodian's public key."""
        self.require_initialised()
        return CustodianPublicKey.load(self.custodian_public_key_path)

    def evidence_ca(self) -> EvidenceCA:
        """The hospital evidence CA."""
        self.require_initialised()
        return EvidenceCA.load(self.ca_dir)

    def storage(self) -> Storage:
        """Open the gateway's storage (its own database connection; close it when done)."""
        self.require_initialised()
        return open_storage(self.storage_settings)

    def timestamper(self) -> TimeStampAuthority:
        """The gateway's own TSA, which time-stamps ledger checkpoints.

        A directory initialised before the gateway had a TSA gets its key and certificate
        issued by the evidence CA here, once (decision 1203).
        """
        self.require_initialised()
        ca = self.evidence_ca()
        if not self.tsa_certificate_path.exists():
            with (self.keys / ".tsa.lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # two processes must not issue two pairs
                if not self.tsa_certificate_path.exists():
                    self._issue_tsa(ca)
        try:
            key = serialization.load_pem_private_key(
                read_secret_file(self.tsa_key_path), password=None
            )
            certificate = x509.load_pem_x509_certificate(
                read_public_file(self.tsa_certificate_path)
            )
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:
            raise DataDirError(
                f"the TSA key {self.tsa_key_path} or certificate {self.tsa_certificate_path} "
                f"cannot be read ({error}); restore them from a backup"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise DataDirError(f"TSA key {self.tsa_key_path} is not an elliptic-curve key")
        return TimeStampAuthority(key, certificate, ca.certificate)

    def configured_timestamper(self, settings: TimestampSettings) -> Timestamper:
        """The TSA ``[timestamps]`` names: an external one at ``tsa_url``, else the gateway's
        own. Every token either gives is verified before it is used."""
        if not settings.tsa_url:
            return self.timestamper()
        if settings.tsa_ca_file is None:
            raise GatewayConfigError("timestamps.tsa_ca_file is required with timestamps.tsa_url")
        try:
            trusted = x509.load_pem_x509_certificates(settings.tsa_ca_file.read_bytes())
        except (OSError, ValueError) as error:
            raise GatewayConfigError(
                f"timestamps.tsa_ca_file {settings.tsa_ca_file} is not readable PEM: {error}"
            ) from None
        return TsaClient(settings.tsa_url, trusted)

    def _issue_tsa(self, ca: EvidenceCA) -> None:
        """Issue the TSA's key and certificate; the certificate, written last, marks it done."""
        key, certificate = ca.issue_tsa_certificate(ca.hospital_name + TSA_NAME_SUFFIX)
        write_private_key(self.tsa_key_path, key)
        write_certificate(self.tsa_certificate_path, certificate)
