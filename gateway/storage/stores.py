"""The gateway's storage opened as one object: every record store and the vault."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import StorageError
from gateway.storage.alert_actions import AlertActions
from gateway.storage.alert_feed import AlertFeed
from gateway.storage.badge_states import BadgeStates
from gateway.storage.badges import BadgeRegistry
from gateway.storage.catalogue import Catalogue
from gateway.storage.checkpoints import Checkpoints
from gateway.storage.clock_samples import ClockSamples
from gateway.storage.custody import CustodyEntries
from gateway.storage.cutoffs import BadgeCutoffs
from gateway.storage.database import Database, open_database
from gateway.storage.enrolment_codes import EnrolmentCodes
from gateway.storage.incident_index import IncidentIndex
from gateway.storage.leaves import Leaves
from gateway.storage.login_failures import LoginFailures
from gateway.storage.retention import RetentionRecords
from gateway.storage.s3_vault_settings import S3VaultSettings
from gateway.storage.second_factors import SecondFactors
from gateway.storage.sessions import ConsoleSessions
from gateway.storage.shard_leases import ShardLeases
from gateway.storage.users import ConsoleUsers
from gateway.storage.vault import DirectoryVault, Vault

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""How a database URL of the PostgreSQL backend begins."""


@dataclass(frozen=True)
class StorageSettings:
    """Where the gateway keeps its records and its footage."""

    database: Path | str
    """The SQLite database file (the one-box default), or a ``postgresql://`` URL."""
    vault: Path | S3VaultSettings
    """The directory of sealed segments (the one-box default), or an S3 bucket with Object
    Lock."""


class Storage:
    """The record stores on one database connection, and the vault.

    Use one Storage from one thread at a time, like its connection; another thread or
    process opens its own. Writes through several stores commit together inside one
    ``transaction``.
    """

    def __init__(self, database: Database, vault: Vault) -> None:
        """The stores over ``database``, and ``vault``."""
        self.database = database
        self.vault = vault
        self.catalogue = Catalogue(database)
        self.leaves = Leaves(database)
        self.checkpoints = Checkpoints(database)
        self.custody = CustodyEntries(database)
        self.badges = BadgeRegistry(database)
        self.enrolment_codes = EnrolmentCodes(database)
        self.badge_states = BadgeStates(database)
        self.cutoffs = BadgeCutoffs(database)
        self.clock_samples = ClockSamples(database)
        self.users = ConsoleUsers(database)
        self.sessions = ConsoleSessions(database)
        self.login_failures = LoginFailures(database)
        self.second_factors = SecondFactors(database)
        self.shard_leases = ShardLeases(database)
        self.alert_actions = AlertActions(database)
        self.alert_feed = AlertFeed(database)
        self.incident_index = IncidentIndex(database)
        self.retention = RetentionRecords(database)

    def transaction(self) -> AbstractContextManager[bool]:
        """One write transaction, or the open one joined (yields True when joined)."""
        return self.database.transaction()

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on this storage's connection."""
        return self.database.in_transaction

    def close(self) -> None:
        """Close the database connection."""
        self.database.close()


def open_storage(settings: StorageSettings) -> Storage:
    """Open the gateway's storage: the database (its schema brought up to date) and the vault.

    This is the one place the storage is opened; StorageError or VaultError says why not.
    """
    database = _open_database(settings.database)
    try:
        return Storage(database, _open_vault(settings.vault))
    except BaseException:
        database.close()
        raise


def _open_database(where: Path | str) -> Database:
    """The SQLite file at a path, or the PostgreSQL database a URL names."""
    if isinstance(where, Path):
        return open_database(where)
    if not where.startswith(POSTGRES_SCHEMES):
        raise StorageError(
            f"database {where.split('://')[0]!r}: a database URL starts with postgresql://"
        )
    # psycopg is imported only where PostgreSQL is used: the one-box gateway needs none
    from gateway.storage.postgres import open_postgres  # noqa: PLC0415

    return open_postgres(where)


def _open_vault(where: Path | S3VaultSettings) -> Vault:
    """The directory vault at a path, or the S3 bucket the settings name."""
    if isinstance(where, Path):
        return DirectoryVault(where)
    # boto3 is imported only where the S3 vault is used
    from gateway.storage.s3_vault import connect  # noqa: PLC0415

    return connect(where)
