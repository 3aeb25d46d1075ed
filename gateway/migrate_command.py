"""The ``gateway migrate`` command line: its arguments, and what it prints (``gateway.migrate``
does the work; psycopg and boto3, the fleet extra, are imported only when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.datadir import GatewayDataDir

COMMAND = "migrate"


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``gateway migrate --to-database URL --to-vault s3://BUCKET ...``."""
    migrate = commands.add_parser(
        COMMAND,
        help="copy this hospital (SQLite and the vault directory) into PostgreSQL and S3",
    )
    migrate.add_argument(
        "--to-database", required=True,
        help="postgresql:// URL of an empty database (a password only through ?passfile=)",
    )
    migrate.add_argument("--to-vault", required=True, help="s3://bucket, with Object Lock")
    migrate.add_argument("--vault-endpoint", required=True, help="the S3 API's URL")
    migrate.add_argument(
        "--vault-credentials", type=Path, required=True,
        help='JSON {"access_key": ..., "secret_key": ...}, mode 0600',
    )


def run(args: argparse.Namespace, data_dir: GatewayDataDir) -> int:
    """``gateway migrate``: copy, check, and say what to put in gateway.toml."""
    # psycopg and boto3 (the fleet extra) are imported only by the command that needs them
    from gateway.migrate import migrate_hospital, vault_settings  # noqa: PLC0415

    config = GatewayConfig.load(data_dir.root)
    url = GatewayConfig.from_mapping(
        data_dir.root, {"database": {"url": args.to_database}}
    ).database_url  # the same rules as gateway.toml: no password on the command line
    vault = vault_settings(
        args.to_vault, args.vault_endpoint, args.vault_credentials, config.retention_days
    )
    result = migrate_hospital(data_dir, url, vault, print)
    checked = (
        "no signed checkpoint yet"
        if result.checkpoint_size is None
        else f"its last checkpoint (size {result.checkpoint_size})"
    )
    print(
        f"copied {sum(result.copied.rows.values())} rows and {result.copied.segments} "
        f"segments; the ledger ({result.ledger_size} entries) verifies against {checked}"
    )
    print(
        f'now set [database] url = "{args.to_database}" and [vault] url = "{args.to_vault}"'
        " in gateway.toml (docs/gateway-config.md), then start the gateway"
    )
    return 0
