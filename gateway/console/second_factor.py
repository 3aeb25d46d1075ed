"""The console's second factor: TOTP (RFC 6238) and single-use recovery codes.

Custodians and administrators must have one (``REQUIRED_ROLES``); officers and auditors may.
A code is the RFC 6238 default (SHA-1, six digits, 30-second steps), accepted for the step
of now and one step either side (clock drift between phone and gateway), and only for a
step later than the last one the user logged in with: a code seen over a shoulder or in a
proxy log cannot be used again, nor an older one after it.

The secret is sealed (AES-256-GCM, the user name as associated data) under a key in
``DATA/keys/console-second-factor.key`` (0600), so a copy of the database alone does not
give the secrets away; backups must carry that key with the database (decision 1761).
Ten recovery codes of 16 random characters (79 bits) each are shown once when the second
factor is set up (or replaced); the database keeps only their SHA-256, and each works once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from evidence.durable import write_durably
from evidence.errors import KeyFileError
from evidence.keyfiles import read_secret_file
from gateway.console.users import Role
from gateway.errors import ConsoleError
from gateway.storage import Storage
from gateway.storage.second_factors import SecondFactors

REQUIRED_ROLES = frozenset({Role.CUSTODIAN, Role.ADMIN})
"""Roles that may not use the console without a second factor."""
KEY_FILE = "console-second-factor.key"
RECOVERY_CODES = 10
STEP_S = 30
WINDOW_STEPS = 1
_KEY_BYTES = 32
_NONCE_BYTES = 12
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_GROUPS = 4
_RECOVERY_GROUP = 4
_MAX_CODE = 64


@dataclass(frozen=True)
class SecondFactorState:
    """What ``gateway user list`` and the pages say about a user's second factor."""

    enrolled: bool
    required: bool
    recovery_codes_left: int

    @property
    def summary(self) -> str:
        """``on (N recovery codes)``, ``off``, or ``required, not set up``."""
        if self.enrolled:
            return f"on ({self.recovery_codes_left} recovery codes)"
        return "required, not set up" if self.required else "off"


@dataclass(frozen=True)
class Enrolment:
    """A second factor being set up: the secret to type or scan, as URI and QR code."""

    secret: str
    uri: str

    def qr_svg(self) -> str:
        """The URI as a QR code, an inline SVG element (no script, no external image)."""
        return str(segno.make(self.uri, error="m").svg_inline(scale=4, omitsize=False))


class SecretBox:
    """Seals TOTP secrets under the gateway's second-factor key, made on first use."""

    def __init__(self, key_path: Path) -> None:
        """Use (or create, 0600) the key at ``key_path``."""
        self._path = key_path
        self._aead: AESGCM | None = None

    def seal(self, username: str, secret: str) -> bytes:
        """``secret`` encrypted for ``username``: nonce, then ciphertext and tag."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._cipher().encrypt(nonce, secret.encode("ascii"), username.encode())

    def open(self, username: str, sealed: bytes) -> str:
        """The secret sealed for ``username``; ConsoleError if the key does not open it."""
        try:
            plain = self._cipher().decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], username.encode()
            )
        except (InvalidTag, ValueError):
            raise ConsoleError(
                f"the second factor of {username[:80]!r} cannot be opened with {self._path}: "
                "was the database restored without its key? An administrator can reset it"
            ) from None
        return plain.decode("ascii")

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            self._aead = AESGCM(self._key())
        return self._aead

    def _key(self) -> bytes:
        if not self._path.exists():
            try:
                write_durably(self._path, secrets.token_bytes(_KEY_BYTES), 0o600, replace=False)
            except FileExistsError:
                pass  # another process made it at the same moment: use that one
            else:
                _give_to_directory_owner(self._path)
        try:
            key = read_secret_file(self._path)
        except KeyFileError as error:
            raise ConsoleError(str(error)) from None
        if len(key) != _KEY_BYTES:
            raise ConsoleError(f"{self._path} is not a {_KEY_BYTES}-byte key")
        return key


class SecondFactor:
    """Set up, check and reset users' TOTP secrets and recovery codes."""

    def __init__(
        self,
        store: SecondFactors,
        box: SecretBox,
        *,
        issuer: str = "medbadge",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep factors in ``store``, secrets sealed by ``box``; ``clock`` gives Unix seconds."""
        self._store = store
        self._box = box
        self._issuer = issuer
        self._clock = clock

    @staticmethod
    def required(role: Role) -> bool:
        """Whether ``role`` must have a second factor."""
        return role in REQUIRED_ROLES

    def enrolled(self, username: str) -> bool:
        """Whether ``username`` has a second factor set up."""
        record = self._store.get(username)
        return record is not None and record.secret is not None

    def state(self, username: str, role: Role) -> SecondFactorState:
        """The user's second factor as the pages and ``gateway user list`` show it."""
        return SecondFactorState(
            self.enrolled(username),
            self.required(role),
            self._store.recovery_codes_left(username),
        )

    def begin(self, username: str) -> Enrolment:
        """A new secret for ``username``, kept (sealed) until a code confirms it."""
        secret = pyotp.random_base32()
        self._store.set_pending(username, self._box.seal(username, secret))
        uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=self._issuer)
        return Enrolment(secret, uri)

    def confirm(self, username: str, code: str) -> list[str]:
        """Make the secret being set up the user's, if ``code`` is its current code.

        Returns the new recovery codes (shown once, kept only hashed); ConsoleError if no
        secret is being set up or the code is not right.
        """
        record = self._store.get(username)
        if record is None or record.pending is None:
            raise ConsoleError("no second factor is being set up: start again")
        step = _matching_step(self._box.open(username, record.pending), code, self._clock(), 0)
        if step is None:
            raise ConsoleError(
                "that code is not the one the authenticator shows now: check the phone's "
                "clock, and type the six digits again"
            )
        codes = _new_recovery_codes()
        self._store.enrol(
            username,
            record.pending,
            step,
            time.time_ns(),
            [_code_digest(username, code) for code in codes],
        )
        return codes

    def verify(self, username: str, code: str) -> str | None:
        """``"totp"`` or ``"recovery-code"`` if ``code`` logs ``username`` in, else None.

        A code is spent as it is accepted: the same TOTP step, or the same recovery code,
        is refused the next time.
        """
        record = self._store.get(username)
        if record is None or record.secret is None:
            return None
        text = code.strip()[:_MAX_CODE]
        if _looks_like_totp(text):
            secret = self._box.open(username, record.secret)
            step = _matching_step(secret, text, self._clock(), record.last_step)
            if step is not None and self._store.use_step(username, step):
                return "totp"
            return None
        digest = _code_digest(username, text)
        if text and self._store.use_recovery_code(username, digest, time.time_ns()):
            return "recovery-code"
        return None

    def new_recovery_codes(self, username: str) -> list[str]:
        """Replace the user's recovery codes; return the new ones (shown once)."""
        if not self.enrolled(username):
            raise ConsoleError(f"{username[:80]!r} has no second factor to recover")
        codes = _new_recovery_codes()
        self._store.replace_recovery_codes(
            username, [_code_digest(username, code) for code in codes]
        )
        return codes

    def reset(self, username: str) -> None:
        """Remove the user's second factor (a lost phone): they set one up at next login."""
        self._store.clear(username)


def open_second_factor(storage: Storage, keys_dir: Path, hospital: str) -> SecondFactor:
    """The second factor over ``storage``, its secrets sealed under the key in ``keys_dir``."""
    box = SecretBox(second_factor_key_path(keys_dir))
    return SecondFactor(storage.second_factors, box, issuer=f"medbadge {hospital}")


def second_factor_key_path(keys_dir: Path) -> Path:
    """Where the key that seals the TOTP secrets is, in the gateway's key directory."""
    return keys_dir / KEY_FILE


def _looks_like_totp(text: str) -> bool:
    digits = text.replace(" ", "")
    return len(digits) == 6 and digits.isdigit()


def _matching_step(secret: str, code: str, now: float, after_step: int) -> int | None:
    """The step within the window whose code is ``code`` and comes after ``after_step``."""
    digits = code.replace(" ", "").strip()
    if not _looks_like_totp(digits):
        return None
    totp = pyotp.TOTP(secret, interval=STEP_S)
    current = int(now) // STEP_S
    found = None
    for step in range(current - WINDOW_STEPS, current + WINDOW_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), digits) and step > after_step:
            found = step
    return found


def _new_recovery_codes() -> list[str]:
    return [
        "-".join(
            "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_GROUP))
            for _ in range(_RECOVERY_GROUPS)
        )
        for _ in range(RECOVERY_CODES)
    ]


def _code_digest(username: str, code: str) -> bytes:
    """SHA-256 of a recovery code as typed (case, spaces and dashes aside), bound to its user.

    79 random bits need no slow hash: guessing one from its digest is out of reach.
    """
    normal = "".join(code.lower().split()).replace("-", "")
    return hashlib.sha256(f"medbadge recovery code\0{username}\0{normal}".encode()).digest()


def _give_to_directory_owner(path: Path) -> None:
    """Made by root (``gateway user`` run as root), hand the key to the service account."""
    if os.geteuid() != 0:
        return
    directory = path.parent.stat()
    os.chown(path, directory.st_uid, directory.st_gid)
