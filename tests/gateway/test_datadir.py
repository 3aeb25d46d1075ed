"""The data directory: the gateway stamps with its own TSA, or an external one when configured;
its records and footage go where gateway.toml says."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from evidence.hashing import sha256
from evidence.keys import HpkeSuite
from evidence.timestamp import verify_timestamp
from gateway.config import GatewayConfig
from gateway.datadir import GatewayDataDir
from gateway.pki.ca import EvidenceCA
from gateway.storage.postgres import PostgresDatabase
from gateway.storage.s3_vault import S3Vault
from gateway.timestamping import TimeStampAuthority, TsaHttpServer
from tests.postgres import PostgresServer
from tests.seaweedfs import SeaweedServer


def test_own_tsa_by_default_and_an_external_one_over_http(tmp_path: Path) -> None:
    data_dir = GatewayDataDir(tmp_path / "gateway")
    data_dir.initialise("Test Hospital", HpkeSuite.X25519, None)
    digest = sha256(b"a checkpoint note")

    own = data_dir.configured_timestamper(GatewayConfig.from_mapping(data_dir.root, {}).timestamps)
    verify_timestamp(own.stamp(digest), digest, data_dir.evidence_ca().certificate)

    national = EvidenceCA.create("National PKI")
    key, certificate = national.issue_tsa_certificate("National TSA")
    (tmp_path / "pki.crt").write_bytes(national.certificate.public_bytes(Encoding.PEM))
    authority = TimeStampAuthority(key, certificate, national.certificate)
    with TsaHttpServer(authority, "127.0.0.1", 0) as server:
        settings = {"timestamps": {"tsa_url": server.url, "tsa_ca_file": str(tmp_path / "pki.crt")}}
        external = data_dir.configured_timestamper(
            GatewayConfig.from_mapping(data_dir.root, settings).timestamps
        )
        token = external.stamp(digest)
    info = verify_timestamp(token, digest, national.certificate)
    assert info.tsa_name is not None and "National TSA" in info.tsa_name


def test_gateway_toml_puts_the_records_in_postgresql_and_the_footage_in_s3(
    tmp_path: Path, postgres_server: PostgresServer, seaweed_server: SeaweedServer
) -> None:
    data_dir = GatewayDataDir(tmp_path / "gateway")
    data_dir.root.mkdir()
    database = postgres_server.create_database()
    passfile = tmp_path / "pgpass"
    passfile.touch(mode=0o600)
    passfile.write_text(f"*:*:*:*:{postgres_server.password}\n")
    url = database.replace(f":{postgres_server.password}@", "@") + f"&passfile={passfile}"
    bucket = seaweed_server.create_bucket("datadir-vault")
    keys = seaweed_server.credentials_file(tmp_path)
    (data_dir.root / "gateway.toml").write_text(
        f'[database]\nurl = "{url}"\n[vault]\nurl = "s3://{bucket}"\n'
        f'endpoint = "{seaweed_server.endpoint}"\ncredentials_file = "{keys}"\n'
        "[retention]\ndays = 90\n"
    )
    data_dir.initialise("Test Hospital", HpkeSuite.X25519, None)
    assert not data_dir.database_path.exists() and not data_dir.vault_dir.exists()
    storage = data_dir.storage()
    try:
        assert isinstance(storage.database, PostgresDatabase)
        assert isinstance(storage.vault, S3Vault) and storage.vault.bucket == bucket
        storage.vault.put(io.BytesIO(b"footage"), sha256(b"footage"))
        until = storage.vault.retained_until(sha256(b"footage"))
        assert timedelta(days=89) < until - datetime.now(UTC) <= timedelta(days=90)
    finally:
        storage.close()


def test_a_configuration_file_elsewhere_names_the_storage(tmp_path: Path) -> None:
    elsewhere = tmp_path / "etc" / "gateway.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text('[database]\nurl = "postgresql://gateway@db.city.kz/hospital4"\n')
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "gateway.toml").write_text("")  # not this one
    named = GatewayDataDir(tmp_path / "gateway", elsewhere).storage_settings
    assert named.database == "postgresql://gateway@db.city.kz/hospital4"
    assert GatewayDataDir(tmp_path / "gateway").storage_settings.database == (
        tmp_path / "gateway" / "gateway.db"
    )
