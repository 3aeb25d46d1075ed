"""The gateway's storage: the database, its record stores, and the vault of sealed segments.

Everything the gateway keeps goes through here: ``open_storage`` opens it from its settings,
and ``Storage`` holds one record store per kind of record, each with domain methods, on one
connection, and the vault. No module outside this package writes SQL or holds a connection
(decision 1800).
"""

from __future__ import annotations

from gateway.storage.database import Database
from gateway.storage.stores import Storage, StorageSettings, open_storage
from gateway.storage.vault import Vault

__all__ = ["Database", "Storage", "StorageSettings", "Vault", "open_storage"]
