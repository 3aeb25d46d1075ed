"""The gateway's data directory: where the hospital's keys, evidence CA and database live."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from evidence.keys import CustodianPrivateKey, CustodianPublicKey, HpkeSuite, SigningKey
from gateway.ca import EvidenceCA
from gateway.database import open_database
from gateway.errors import GatewayError


class DataDirError(GatewayError):
    """The gateway data directory is missing, not initialised, or already initialised."""


@dataclass(frozen=True)
class GatewayDataDir:
    """Paths inside a gateway data directory, and the operations that create and read it."""

    root: Path

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
    def ca_dir(self) -> Path:
        """The hospital evidence CA (key and certificate)."""
        return self.root / "ca"

    @property
    def database_path(self) -> Path:
        """The gateway's SQLite database."""
        return self.root / "gateway.db"

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
        EvidenceCA.create(hospital).save(self.ca_dir)
        open_database(self.database_path).close()
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

    def database(self) -> sqlite3.Connection:
        """Open the gateway database."""
        self.require_initialised()
        return open_database(self.database_path)
