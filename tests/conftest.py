"""Shared pytest fixtures: a real mosquitto broker per test; PostgreSQL and SeaweedFS of our own,
started once for the run when a test asks for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mosquitto import MosquittoProcess, running_broker
from tests.postgres import PostgresServer, running_postgres
from tests.seaweedfs import SeaweedServer, running_seaweed
from tests.storage_backends import BACKENDS, DatabaseFactory, TestDatabase


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A running mosquitto with accounts gateway, badge-a and badge-b (see DEFAULT_LOGINS)."""
    with running_broker(tmp_path / "broker") as process:
        yield process


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL of our own for the whole run (free port, removed afterwards)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[SeaweedServer]:
    """One SeaweedFS S3 server of our own for the whole run (free ports, removed afterwards)."""
    with running_seaweed() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def database_factory(request: pytest.FixtureRequest) -> DatabaseFactory:
    """Each test twice: on a SQLite file in its directory, and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return lambda root: TestDatabase("sqlite", root / "gateway.db")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return lambda _root: TestDatabase("postgresql", server.create_database())
