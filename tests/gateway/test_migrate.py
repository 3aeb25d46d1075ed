"""``gateway migrate``: an embedded hospital moved into PostgreSQL and S3, checked against its
ledger and every segment's SHA-256; a target that holds anything is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.ledger.ledger import open_ledger
from gateway.storage.postgres import PostgresDatabase
from gateway.storage.s3_vault import S3Vault
from tests.gateway.badge_messages import make_hospital
from tests.gateway.court_package import deliver_incident, record_footage
from tests.postgres import PostgresServer
from tests.seaweedfs import SeaweedServer
from tests.storage_backends import TestDatabase


def test_a_hospital_moves_into_postgresql_and_s3_and_runs_there(
    tmp_path: Path,
    postgres_server: PostgresServer,
    seaweed_server: SeaweedServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hospital = make_hospital(tmp_path)
    incident = deliver_incident(hospital, record_footage(2.0))
    data_dir = hospital.data_dir
    source = data_dir.storage()
    try:
        checkpoint = open_ledger(data_dir, source).checkpoint()
        segments = source.catalogue.segments("badge-a", 0, 1000)
        footage = {s.sealed_sha256: source.vault.open(s.sealed_sha256).read() for s in segments}
        source.users.add("olga", "a password hash", "officer", 1, "test")
        user = source.users.get("olga")
    finally:
        source.close()
    assert segments and checkpoint.size > 0
    database = TestDatabase("postgresql", postgres_server.create_database())
    toml = database.gateway_toml(tmp_path)
    url = toml.split('url = "')[1].split('"')[0]
    bucket = seaweed_server.create_bucket("migrated-hospital")
    keys = seaweed_server.credentials_file(tmp_path)
    command = [
        "--data", str(data_dir.root), "migrate", "--to-database", url,
        "--to-vault", f"s3://{bucket}", "--vault-endpoint", seaweed_server.endpoint,
        "--vault-credentials", str(keys),
    ]
    assert main(command) == 0
    said = capsys.readouterr().out
    assert f"{len(segments)} segments" in said
    assert f"verifies against its last checkpoint (size {checkpoint.size})" in said

    (data_dir.root / "gateway.toml").write_text(
        f'{toml}[vault]\nurl = "s3://{bucket}"\nendpoint = "{seaweed_server.endpoint}"\n'
        f'credentials_file = "{keys}"\n'
    )
    moved = data_dir.storage()
    try:
        assert isinstance(moved.database, PostgresDatabase) and isinstance(moved.vault, S3Vault)
        ledger = open_ledger(data_dir, moved)  # verifies against the copied checkpoint
        assert ledger.latest_checkpoint() is not None
        assert moved.catalogue.incident("badge-a", incident.incident_id) is not None
        assert moved.catalogue.segments("badge-a", 0, 1000) == segments
        for sha, data in footage.items():
            with moved.vault.open(sha) as stream:
                assert stream.read() == data
        assert user is not None and moved.users.get("olga") == user
        ledger.append("custody", {"actor": "test", "after": "migration"})  # identities moved on
        assert ledger.checkpoint().size == checkpoint.size + 1
    finally:
        moved.close()

    (data_dir.root / "gateway.toml").unlink()
    assert main(command) == 1  # the target holds the hospital now
    assert "already holds segments; migrate into an empty one" in capsys.readouterr().err
    command[command.index(f"s3://{bucket}")] = f"s3://{seaweed_server.create_bucket('empty-one')}"
    assert main(command) == 1  # an empty bucket, but the database holds the hospital
    assert "already holds records; migrate into an empty one" in capsys.readouterr().err


def test_a_source_whose_ledger_does_not_verify_is_not_moved(
    tmp_path: Path,
    postgres_server: PostgresServer,
    seaweed_server: SeaweedServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    storage = hospital.data_dir.storage()
    try:
        open_ledger(hospital.data_dir, storage).checkpoint()
    finally:
        storage.close()
    editor = sqlite3.connect(hospital.data_dir.database_path)
    editor.execute("UPDATE ledger_leaves SET leaf_hash = zeroblob(32) WHERE leaf_index = 0")
    editor.commit()
    editor.close()
    database = TestDatabase("postgresql", postgres_server.create_database())
    url = database.gateway_toml(tmp_path).split('url = "')[1].split('"')[0]
    bucket = seaweed_server.create_bucket("refused-hospital")
    assert main([
        "--data", str(hospital.data_dir.root), "migrate", "--to-database", url,
        "--to-vault", f"s3://{bucket}", "--vault-endpoint", seaweed_server.endpoint,
        "--vault-credentials", str(seaweed_server.credentials_file(tmp_path)),
    ]) == 1
    assert "ledger leaf 0's stored hash" in capsys.readouterr().err
    untouched = database.rows(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'badges'"
        " AND table_schema = current_schema()"
    )
    assert untouched == [(0,)]
