"""``gateway upgrade``: bring a data directory made by an earlier release up to this one.

``plan_upgrade`` only reads: the database's schema version against this software's, each
pending migration's statements, whether the gateway's TSA key is still to be issued
(decision 1203), and whether ``gateway.toml`` still loads. ``apply_upgrade`` does what the
plan says (the same the next ``gateway run`` would do on its own) and then checks the
ledger against its last checkpoint. Take a backup first (docs/deployment.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.datadir import GatewayDataDir
from gateway.errors import GatewayError, StorageError
from gateway.ledger.ledger import open_ledger
from gateway.storage.database import schema_version
from gateway.storage.migrations import SCHEMA_VERSION, migration_steps


@dataclass(frozen=True)
class UpgradePlan:
    """What an upgrade of one data directory changes."""

    data_dir: Path
    database_version: int
    software_version: int
    migrations: tuple[tuple[int, tuple[str, ...]], ...]
    """Each pending migration's number and what its statements do."""
    issues_tsa: bool
    """The gateway's own TSA key and certificate are still to be issued."""
    config_problem: str | None
    """Why ``gateway.toml`` does not load under this software, or None."""

    @property
    def changes(self) -> bool:
        """Whether anything would change."""
        return bool(self.migrations) or self.issues_tsa

    def describe(self) -> list[str]:
        """The plan in lines an operator reads."""
        lines = [
            f"data directory {self.data_dir}: database schema version {self.database_version}, "
            f"this software writes version {self.software_version}"
        ]
        for number, phrases in self.migrations:
            lines.append(f"  migration {number}: {'; '.join(phrases)}")
        if self.issues_tsa:
            lines.append("  the gateway's TSA key and certificate are issued by the evidence CA")
        if not self.changes:
            lines.append("  nothing to change: the data directory is up to date")
        if self.config_problem is not None:
            lines.append(f"  gateway.toml must be fixed first: {self.config_problem}")
        return lines


def plan_upgrade(data_dir: GatewayDataDir, config_path: Path | None = None) -> UpgradePlan:
    """What ``apply_upgrade`` would change; changes nothing."""
    data_dir.require_initialised()
    version = schema_version(data_dir.database_path)
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"the database {data_dir.database_path} has schema version {version}, newer than "
            f"this software ({SCHEMA_VERSION}): install the release that made it, or a newer one"
        )
    problem = None
    try:
        GatewayConfig.load(data_dir.root, config_path)
    except GatewayError as error:
        problem = str(error)
    return UpgradePlan(
        data_dir=data_dir.root,
        database_version=version,
        software_version=SCHEMA_VERSION,
        migrations=tuple((number, tuple(phrases)) for number, phrases in migration_steps(version)),
        issues_tsa=not data_dir.tsa_certificate_path.exists(),
        config_problem=problem,
    )


def apply_upgrade(data_dir: GatewayDataDir, config_path: Path | None = None) -> UpgradePlan:
    """Carry out the plan: migrate the database, issue the TSA if due, check the ledger.

    Returns the plan it carried out; GatewayError (LedgerIntegrityError for the ledger)
    says what failed. A configuration that does not load stops it before anything changes.
    """
    plan = plan_upgrade(data_dir, config_path)
    if plan.config_problem is not None:
        raise GatewayError(f"gateway.toml does not load: {plan.config_problem}")
    storage = data_dir.storage()  # the migrations run here, each in its own transaction
    try:
        data_dir.timestamper()
        open_ledger(data_dir, storage)
    finally:
        storage.close()
    return plan
