"""The S3 vault on a real SeaweedFS: locked objects in COMPLIANCE mode, whose deletion before
their date the store itself refuses; legal holds; checksums the store checks; streaming
reads; credentials from a private file."""

from __future__ import annotations

import hashlib
import io
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from gateway.errors import VaultError
from gateway.storage import StorageSettings, open_storage
from gateway.storage.s3_vault import S3Vault, connect
from gateway.storage.s3_vault_settings import S3VaultSettings
from tests.seaweedfs import SeaweedServer

_buckets = itertools.count(1)
FIXED = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def new_bucket(server: SeaweedServer) -> str:
    return server.create_bucket(f"vault-test-{next(_buckets)}")


def settings(server: SeaweedServer, root: Path, bucket: str, days: int = 30) -> S3VaultSettings:
    return S3VaultSettings(bucket, server.endpoint, server.credentials_file(root), days)


def test_segments_round_trip_locked_until_the_retention_date(
    tmp_path: Path, seaweed_server: SeaweedServer
) -> None:
    bucket = new_bucket(seaweed_server)
    vault = connect(settings(seaweed_server, tmp_path, bucket, 30), lambda: FIXED)
    data = bytes(range(256)) * 9000  # past one read block
    sha = hashlib.sha256(data).digest()
    assert not vault.exists(sha)
    vault.put(io.BytesIO(data), sha)
    assert vault.exists(sha) and vault.size(sha) == len(data)
    with vault.open(sha) as stream:
        assert stream.read(1000) == data[:1000]
        assert stream.read() == data[1000:]
    assert vault.retained_until(sha) == FIXED + timedelta(days=30)
    source = tmp_path / "finished.part"
    source.write_bytes(b"a finished segment")
    taken = hashlib.sha256(b"a finished segment").digest()
    vault.take_file(source, taken)
    with vault.open(taken) as stream:
        assert stream.read() == b"a finished segment"
    with pytest.raises(VaultError, match="holds no segment"):
        vault.open(bytes(32))


def test_bytes_that_are_not_what_their_name_says_are_refused(
    tmp_path: Path, seaweed_server: SeaweedServer
) -> None:
    vault = connect(settings(seaweed_server, tmp_path, new_bucket(seaweed_server)))
    named = hashlib.sha256(b"the real segment").digest()
    with pytest.raises(VaultError, match="nothing was stored"):
        vault.put(io.BytesIO(b"other bytes"), named)
    source = tmp_path / "lying.part"
    source.write_bytes(b"other bytes")
    with pytest.raises(VaultError, match="cannot store segment"):
        vault.take_file(source, named)  # the store checks the SHA-256 checksum itself
    assert not vault.exists(named)


def test_the_store_itself_refuses_to_delete_a_locked_segment(
    tmp_path: Path, seaweed_server: SeaweedServer
) -> None:
    bucket = new_bucket(seaweed_server)
    vault = connect(settings(seaweed_server, tmp_path, bucket, 1))
    sha = hashlib.sha256(b"evidence").digest()
    vault.put(io.BytesIO(b"evidence"), sha)
    with pytest.raises(VaultError, match="refused to delete"):
        vault.delete(sha)
    client = seaweed_server.client()  # the gateway's own account, by hand: refused too
    key = f"{sha.hex()[:2]}/{sha.hex()}.mbseal"
    version = client.head_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    locked_until = vault.retained_until(sha)
    with pytest.raises(ClientError, match="AccessDenied"):  # nor may its date be shortened
        client.put_object_retention(
            Bucket=bucket, Key=key, VersionId=version,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": locked_until - timedelta(hours=1)},
        )
    assert vault.retained_until(sha) == locked_until and vault.exists(sha)
    with vault.open(sha) as stream:
        assert stream.read() == b"evidence"


def test_a_legal_hold_keeps_a_segment_past_its_date_until_released(
    tmp_path: Path, seaweed_server: SeaweedServer
) -> None:
    bucket = new_bucket(seaweed_server)
    connect(settings(seaweed_server, tmp_path, bucket))  # checks the bucket and the keys
    vault = S3Vault(seaweed_server.client(), bucket, timedelta(seconds=2))
    held, free = hashlib.sha256(b"held").digest(), hashlib.sha256(b"free").digest()
    vault.put(io.BytesIO(b"held"), held)
    vault.put(io.BytesIO(b"free"), free)
    vault.hold(held, True)
    time.sleep(2.5)  # both dates have passed
    vault.delete(free)
    assert not vault.exists(free)
    with pytest.raises(VaultError, match="refused to delete"):
        vault.delete(held)
    vault.hold(held, False)
    vault.delete(held)
    assert not vault.exists(held)


def test_a_bucket_without_object_lock_and_readable_keys_are_refused(
    tmp_path: Path, seaweed_server: SeaweedServer
) -> None:
    plain = f"plain-bucket-{next(_buckets)}"
    seaweed_server.client().create_bucket(Bucket=plain)
    with pytest.raises(VaultError, match="Object Lock"):
        connect(settings(seaweed_server, tmp_path, plain))
    keys = seaweed_server.credentials_file(tmp_path)
    keys.chmod(0o644)
    with pytest.raises(VaultError, match="others can read it") as refused:
        connect(S3VaultSettings(new_bucket(seaweed_server), seaweed_server.endpoint, keys, 1))
    assert seaweed_server.secret_key not in str(refused.value)


def test_storage_opens_the_s3_vault_its_settings_name(
    tmp_path: Path, seaweed_server: SeaweedServer
) -> None:
    s3 = settings(seaweed_server, tmp_path, new_bucket(seaweed_server))
    storage = open_storage(StorageSettings(tmp_path / "gateway.db", s3))
    try:
        assert isinstance(storage.vault, S3Vault) and storage.vault.bucket == s3.bucket
    finally:
        storage.close()
