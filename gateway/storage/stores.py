"""The gateway's storage opened as one object: every record store and the vault."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

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
from gateway.storage.incident_index import IncidentIndex
from gateway.storage.leaves import Leaves
from gateway.storage.login_failures import LoginFailures
from gateway.storage.retention import RetentionRecords
from gateway.storage.second_factors import SecondFactors
from gateway.storage.sessions import ConsoleSessions
from gateway.storage.users import ConsoleUsers
from gateway.storage.vault import DirectoryVault, Vault


@dataclass(frozen=True)
class StorageSettings:
    """Where the gateway keeps its records and its footage (the one-box backends)."""

    database: Path
    """The SQLite database file."""
    vault: Path
    """The directory of sealed segments."""


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
        self.badge_states = BadgeStates(database)
        self.cutoffs = BadgeCutoffs(database)
        self.clock_samples = ClockSamples(database)
        self.users = ConsoleUsers(database)
        self.sessions = ConsoleSessions(database)
        self.login_failures = LoginFailures(database)
        self.second_factors = SecondFactors(database)
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
    database = open_database(settings.database)
    try:
        return Storage(database, DirectoryVault(settings.vault))
    except BaseException:
        database.close()
        raise
