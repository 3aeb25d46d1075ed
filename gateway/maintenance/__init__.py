"""Keeping a hospital's gateway: backups, restores and upgrades (docs/deployment.md).

``gateway backup``, ``gateway restore`` and ``gateway upgrade`` are defined in
``gateway.maintenance.cli``; the work is in the modules beside it.
"""

from __future__ import annotations

from gateway.maintenance.backup import BackupResult, take_backup
from gateway.maintenance.manifest import Manifest
from gateway.maintenance.restore import RestoreResult, restore_backup

__all__ = ["BackupResult", "Manifest", "RestoreResult", "restore_backup", "take_backup"]
