"""Each badge's broker password, derived from a gateway secret, so a running gateway can
give the broker a new badge's login.

mosquitto 2.0's dynamic security plugin takes a client's password only in clear text
(``createClient``, ``setClientPassword``), hashing it itself; the registry keeps only a
hash. So a badge's password is not a random token forgotten after enrolment but
HMAC-SHA256 of its id and its current public key under a 256-bit secret that never leaves
the data directory's key folder (``keys/broker-badges.key``, mode 0600): whoever enrols
the badge and the running gateway both arrive at the same password, and a rotation (a new
key) gives a new one (decision 1704). The registry's hash says whether a badge's password
is derived this way: a badge enrolled before has a random one the gateway cannot know.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final

from evidence.durable import write_durably
from gateway.datadir import GatewayDataDir
from gateway.errors import BrokerConfigError

SECRET_FILE: Final = "broker-badges.key"  # noqa: S105 - a file name, not a secret
"""In the data directory's ``keys/``: the secret every badge's broker password comes from."""
SECRET_BYTES: Final = 32
_LABEL: Final = b"medbadge broker password v1\x00"


class BadgePasswords:
    """Derives badges' broker passwords from the data directory's secret."""

    def __init__(self, secret: bytes) -> None:
        """Use ``secret`` (``SECRET_BYTES`` random bytes)."""
        if len(secret) != SECRET_BYTES:
            raise BrokerConfigError(
                f"the badge broker password secret must be {SECRET_BYTES} bytes, not {len(secret)}"
            )
        self._secret = secret

    @classmethod
    def of(cls, data_dir: GatewayDataDir) -> BadgePasswords:
        """The data directory's secret, made (0600, once) if it has none yet."""
        data_dir.require_initialised()
        path = data_dir.keys / SECRET_FILE
        if not path.exists():
            try:
                write_durably(path, secrets.token_bytes(SECRET_BYTES), 0o600, replace=False)
            except FileExistsError:
                pass  # made at the same moment by another process: use that one
            except OSError as error:
                raise BrokerConfigError(f"cannot write {path}: {error}") from error
            else:
                _give_to_directory_owner(path)
        try:
            return cls(path.read_bytes())
        except OSError as error:
            raise BrokerConfigError(f"cannot read {path}: {error}") from error

    def password(self, badge_id: str, public_key: bytes) -> str:
        """The broker password of ``badge_id`` while its signing key is ``public_key``."""
        message = _LABEL + badge_id.encode("utf-8") + b"\x00" + public_key
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def matches(self, badge_id: str, public_key: bytes, password_hash: str) -> bool:
        """True when the registry's ``password_hash`` is of the derived password (a badge
        enrolled before passwords were derived has a random one)."""
        try:
            _, kind, iterations, salt, expected = password_hash.split("$")
            if kind != "7":
                return False
            digest = hashlib.pbkdf2_hmac(
                "sha512",
                self.password(badge_id, public_key).encode("utf-8"),
                base64.b64decode(salt, validate=True),
                int(iterations),
            )
        except ValueError:
            return False
        return hmac.compare_digest(base64.b64encode(digest).decode("ascii"), expected)


def _give_to_directory_owner(path: Path) -> None:
    """Made by root for a data directory another account owns: give it that account."""
    if os.geteuid() != 0:
        return
    owner = path.parent.stat()
    if owner.st_uid != 0:
        os.chown(path, owner.st_uid, owner.st_gid)
