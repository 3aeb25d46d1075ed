"""The maintenance commands of ``gateway``: ``backup``, ``restore`` and ``upgrade``."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path

from evidence.durable import write_durably
from gateway.datadir import GatewayDataDir
from gateway.errors import BackupError
from gateway.maintenance.backup import take_backup
from gateway.maintenance.manifest import CHECKPOINT_FILE
from gateway.maintenance.restore import AcceptedLoss, restore_backup
from gateway.maintenance.upgrade import apply_upgrade, plan_upgrade

COMMANDS = frozenset({"backup", "restore", "upgrade"})
"""The commands this module adds to ``gateway``."""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``backup``, ``restore`` and ``upgrade`` to the ``gateway`` parser."""
    backup = commands.add_parser(
        "backup", help="copy the database, vault and keys, consistently, while the gateway runs"
    )
    backup.add_argument("--to", type=Path, required=True, help="a new or empty directory")
    backup.add_argument(
        "--include-custodian-key",
        action="store_true",
        help="also copy the custodian private key (its offline copy normally lives elsewhere)",
    )
    backup.add_argument(
        "--record-checkpoint",
        type=Path,
        metavar="FILE",
        help="also write the backup's last checkpoint to FILE (keep it off this machine)",
    )
    restore = commands.add_parser(
        "restore", help="restore a backup as the data directory --data (new or empty)"
    )
    restore.add_argument("--from", dest="source", type=Path, required=True, help="the backup")
    expect = restore.add_mutually_exclusive_group(required=True)
    expect.add_argument(
        "--expect-checkpoint",
        type=Path,
        metavar="FILE",
        help="the last checkpoint recorded outside the gateway: an older backup is refused",
    )
    expect.add_argument(
        "--no-expected-checkpoint",
        action="store_true",
        help="restore without that check (nothing then shows the backup is the newest)",
    )
    restore.add_argument(
        "--accept-loss",
        action="store_true",
        help="restore a backup older than --expect-checkpoint all the same, recording in the "
        "ledger how many entries were lost (needs --justification)",
    )
    restore.add_argument("--operator", default=getpass.getuser(), help="who restores (recorded)")
    restore.add_argument("--justification", default="", help="why a loss is accepted (recorded)")
    upgrade = commands.add_parser(
        "upgrade", help="migrate a data directory made by an earlier release"
    )
    upgrade.add_argument(
        "--check", action="store_true", help="only say what would change; change nothing"
    )
    upgrade.add_argument("--config", type=Path, help="configuration (default: DATA/gateway.toml)")


def run(args: argparse.Namespace, data_dir: GatewayDataDir) -> int:
    """Run the maintenance command ``args.command``."""
    if args.command == "backup":
        return _backup(args, data_dir)
    if args.command == "restore":
        return _restore(args, data_dir)
    return _upgrade(args, data_dir)


def _backup(args: argparse.Namespace, data_dir: GatewayDataDir) -> int:
    result = take_backup(data_dir, args.to, include_custodian_key=args.include_custodian_key)
    manifest = result.manifest
    print(
        f"backed up {data_dir.root} to {result.directory}: {len(manifest.files)} files, "
        f"{result.bytes} bytes; ledger of {manifest.ledger_size} entries"
    )
    if manifest.custodian_private_key:
        print("the custodian private key is inside: keep this backup as secret as the key")
    else:
        print("the custodian private key is not inside: its offline copy restores footage")
    checkpoint = result.checkpoint
    if checkpoint is None:
        print("the ledger has no checkpoint yet")
        return 0
    print(
        f"last checkpoint: {checkpoint.size} entries, root {checkpoint.root.hex()} "
        f"(in {result.directory / CHECKPOINT_FILE})"
    )
    recorded: Path | None = args.record_checkpoint
    if recorded is not None:
        write_durably(recorded, checkpoint.note, 0o644)
        print(f"recorded it in {recorded}; restore checks a backup against it")
    else:
        print("keep a copy of checkpoint.note off this machine: restore checks against it")
    return 0


def _restore(args: argparse.Namespace, data_dir: GatewayDataDir) -> int:
    accept_loss = None
    if args.accept_loss:
        if args.expect_checkpoint is None or not args.justification.strip():
            raise BackupError(
                "--accept-loss needs --expect-checkpoint (what the loss is measured against) "
                "and --justification (why it is accepted; recorded in the ledger)"
            )
        accept_loss = AcceptedLoss(args.operator, args.justification.strip())
    result = restore_backup(
        args.source,
        data_dir.root,
        expected_checkpoint=args.expect_checkpoint,
        accept_loss=accept_loss,
    )
    print(
        f"restored {args.source} ({result.manifest.hospital}, made by "
        f"{result.manifest.software}) into {data_dir.root}: ledger of {result.ledger_size} "
        "entries, checked against its last checkpoint"
    )
    if result.lost_entries:
        print(
            f"LOSS RECORDED: the backup lacks {result.lost_entries} of the "
            f"{result.expected.size if result.expected else 0} entries the recorded checkpoint "
            "signed; the ledger's custody log now says so (action 'restore'), and witnesses "
            "will see the log start again from the backup's state"
        )
    elif result.expected is not None:
        print(f"it contains the expected checkpoint of {result.expected.size} entries")
    else:
        print("warning: not checked against a recorded checkpoint (--no-expected-checkpoint)")
    if not result.manifest.custodian_private_key:
        print(
            f"the custodian private key was not in the backup: put its offline copy at "
            f"{data_dir.custodian_key_path} (mode 0600) before playback or export"
        )
    print(
        "next: give the directory to the gateway's account (chown -R), run 'gateway "
        "broker-config', start mosquitto, then the gateway (it brings the badges' broker "
        "accounts in step)"
    )
    return 0


def _upgrade(args: argparse.Namespace, data_dir: GatewayDataDir) -> int:
    if args.check:
        plan = plan_upgrade(data_dir, args.config)
        for line in plan.describe():
            print(line)
        return 1 if plan.config_problem is not None else 0
    plan = apply_upgrade(data_dir, args.config)
    for line in plan.describe():
        print(line)
    print("upgraded; the ledger checks against its last checkpoint" if plan.changes else "done")
    return 0
