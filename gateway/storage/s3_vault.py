"""The vault on an S3-compatible store with Object Lock in COMPLIANCE mode (decision 2301).

Each sealed segment is one object, named as in the directory vault
(``<hex[:2]>/<hex>.mbseal``), written with ``ObjectLockMode=COMPLIANCE`` and a retain-until
date the retention policy gives (the gateway's clock plus the retention period at the
time of writing), and with its SHA-256 as the S3 checksum, so the store itself refuses
bytes that are not what the name says. In COMPLIANCE mode nobody, the gateway's own
account included, can delete a version or shorten its date before it passes: the store
refuses, and ``delete`` says so. A legal hold is the object's S3 legal hold, which keeps
it past its date until released.

``put`` spools its stream to a temporary file while hashing it (the checksum travels in the
request's headers, before the body), then uploads the file; ``take_file`` uploads the
caller's finished file without reading it twice. ``open`` streams the object's body.
The bucket must have Object Lock enabled; ``check_bucket`` says so at start-up, not at the
first press. The access keys come from a file only its owner may read, and never appear in
a message.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from evidence.errors import KeyFileError
from evidence.keyfiles import read_secret_file
from gateway.errors import VaultError
from gateway.storage.s3_vault_settings import S3VaultSettings
from gateway.storage.vault import SUFFIX, vault_name

_BLOCK = 1 << 20
_SPOOL_IN_MEMORY = 8 << 20
_TIMEOUT_S = 30
_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion"})

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def connect(settings: S3VaultSettings, clock: Clock = _now) -> S3Vault:
    """The S3 vault ``settings`` name, its bucket checked for Object Lock."""
    try:
        keys = json.loads(read_secret_file(settings.credentials_file))
        access_key, secret_key = str(keys["access_key"]), str(keys["secret_key"])
    except KeyFileError as error:
        raise VaultError(f"S3 vault credentials: {error}") from None
    except (ValueError, KeyError, TypeError):
        raise VaultError(
            f"S3 vault credentials file {settings.credentials_file} must be JSON with"
            ' "access_key" and "secret_key"'
        ) from None
    client = boto3.client(
        "s3",
        endpoint_url=settings.endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=settings.region,
        verify=str(settings.ca_file) if settings.ca_file is not None else True,
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=_TIMEOUT_S,
            read_timeout=_TIMEOUT_S,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )
    vault = S3Vault(client, settings.bucket, timedelta(days=settings.retention_days), clock)
    vault.check_bucket()
    return vault


class S3Vault:
    """Content-addressed sealed segments as locked objects in one S3 bucket."""

    def __init__(self, client: Any, bucket: str, retain: timedelta, clock: Clock = _now) -> None:
        """Use ``bucket`` through a boto3 S3 ``client``; lock each object for ``retain``."""
        self._s3 = client
        self.bucket = bucket
        self._retain = retain
        self._clock = clock

    def _key(self, sha256: bytes) -> str:
        name = vault_name(sha256)
        return f"{name[:2]}/{name}{SUFFIX}"

    def check_bucket(self) -> None:
        """VaultError unless the bucket exists with Object Lock enabled."""
        try:
            found = self._s3.get_object_lock_configuration(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as error:
            raise self._failed(f"bucket {self.bucket} has no Object Lock", error) from None
        if found.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise VaultError(
                f"S3 bucket {self.bucket} must be created with Object Lock enabled, or a"
                " stored segment could be deleted"
            )

    def exists(self, sha256: bytes) -> bool:
        """True when bytes with this SHA-256 are stored."""
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(sha256))
        except ClientError as error:
            if _code(error) in _MISSING:
                return False
            raise self._failed(f"cannot look up segment {sha256.hex()}", error) from None
        except BotoCoreError as error:
            raise self._failed(f"cannot look up segment {sha256.hex()}", error) from None
        return True

    def size(self, sha256: bytes) -> int:
        """How many bytes are stored under this SHA-256; VaultError if none are."""
        with self._reading(sha256):
            head = self._s3.head_object(Bucket=self.bucket, Key=self._key(sha256))
        return int(head["ContentLength"])

    def open(self, sha256: bytes) -> BinaryIO:
        """The stored bytes as a stream read from the store as it is read here."""
        with self._reading(sha256):
            found = self._s3.get_object(Bucket=self.bucket, Key=self._key(sha256))
        return cast(BinaryIO, io.BufferedReader(_Body(found["Body"]), _BLOCK))

    def put(self, stream: BinaryIO, sha256: bytes) -> None:
        """Store everything ``stream`` yields, refusing it unless its SHA-256 is ``sha256``."""
        if self.exists(sha256):
            return
        with tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY) as spool:
            digest = hashlib.sha256()
            while block := stream.read(_BLOCK):
                digest.update(block)
                spool.write(block)
            if digest.digest() != sha256:
                raise VaultError(
                    f"bytes offered to the vault as {sha256.hex()} hash to "
                    f"{digest.hexdigest()}; nothing was stored"
                )
            spool.seek(0)
            self._upload(spool, sha256)

    def take_file(self, source: Path, sha256: bytes) -> None:
        """Upload a finished local file whose SHA-256 the caller computed; the store checks
        the checksum and refuses other bytes."""
        if self.exists(sha256):
            return
        try:
            with source.open("rb") as stream:
                self._upload(stream, sha256)
        except OSError as error:
            raise VaultError(f"cannot read {source} to store it: {error}") from None

    def _upload(self, body: IO[bytes], sha256: bytes) -> None:
        until = self._clock() + self._retain
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=self._key(sha256),
                Body=body,
                ChecksumSHA256=base64.b64encode(sha256).decode("ascii"),
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=until,
            )
        except (ClientError, BotoCoreError) as error:
            raise self._failed(f"cannot store segment {sha256.hex()}", error) from None

    def retained_until(self, sha256: bytes) -> datetime:
        """The date before which the store refuses to delete the segment."""
        try:
            found = self._s3.get_object_retention(Bucket=self.bucket, Key=self._key(sha256))
        except (ClientError, BotoCoreError) as error:
            raise self._failed(f"cannot read the lock of segment {sha256.hex()}", error) from None
        return cast(datetime, found["Retention"]["RetainUntilDate"])

    def hold(self, sha256: bytes, held: bool) -> None:
        """Place or release the S3 legal hold on every stored version of the segment."""
        status = "ON" if held else "OFF"
        for version in self._versions(sha256):
            try:
                self._s3.put_object_legal_hold(
                    Bucket=self.bucket,
                    Key=self._key(sha256),
                    VersionId=version,
                    LegalHold={"Status": status},
                )
            except (ClientError, BotoCoreError) as error:
                raise self._failed(
                    f"cannot set the legal hold of segment {sha256.hex()}", error
                ) from None

    def delete(self, sha256: bytes) -> None:
        """Delete every version of the segment; the store refuses one still locked, and
        then VaultError says so (nothing stored: nothing to do)."""
        for version in self._versions(sha256):
            try:
                self._s3.delete_object(
                    Bucket=self.bucket, Key=self._key(sha256), VersionId=version
                )
            except (ClientError, BotoCoreError) as error:
                raise self._failed(
                    f"the store refused to delete segment {sha256.hex()} (locked by retention"
                    " or a legal hold?)",
                    error,
                ) from None

    def _versions(self, sha256: bytes) -> list[str]:
        key = self._key(sha256)
        try:
            listed = self._s3.list_object_versions(Bucket=self.bucket, Prefix=key)
        except (ClientError, BotoCoreError) as error:
            raise self._failed(f"cannot list segment {sha256.hex()}", error) from None
        entries = [*listed.get("Versions", ()), *listed.get("DeleteMarkers", ())]
        return [str(entry["VersionId"]) for entry in entries if entry.get("Key") == key]

    def is_empty(self) -> bool:
        """True when the bucket holds no object, version or delete marker at all."""
        try:
            listed = self._s3.list_object_versions(Bucket=self.bucket, MaxKeys=1)
        except (ClientError, BotoCoreError) as error:
            raise self._failed("cannot list the bucket", error) from None
        return not listed.get("Versions") and not listed.get("DeleteMarkers")

    @contextmanager
    def _reading(self, sha256: bytes) -> Iterator[None]:
        """Turn the store's refusal to read ``sha256`` into a VaultError saying why."""
        try:
            yield
        except ClientError as error:
            if _code(error) in _MISSING:
                raise self._missing(sha256) from None
            raise self._failed(f"cannot read segment {sha256.hex()}", error) from None
        except BotoCoreError as error:
            raise self._failed(f"cannot read segment {sha256.hex()}", error) from None

    def _missing(self, sha256: bytes) -> VaultError:
        return VaultError(f"S3 bucket {self.bucket} holds no segment with SHA-256 {sha256.hex()}")

    def _failed(self, what: str, error: Exception) -> VaultError:
        if isinstance(error, ClientError):
            detail = f"{_code(error)}: {error.response.get('Error', {}).get('Message', '')}"
        else:
            detail = type(error).__name__
        return VaultError(f"S3 vault {self.bucket}: {what} ({detail})")


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class _Body(io.RawIOBase):
    """An S3 object's streaming body as a raw stream (read as it arrives)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except (BotoCoreError, OSError) as error:
            raise VaultError(f"reading a segment from the S3 vault failed: {error}") from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
