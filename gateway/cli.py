"""The ``gateway`` command: initialise a hospital, enrol badges, configure the broker, run,
serve the console and administer its users."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from evidence.durable import write_durably
from evidence.errors import EvidenceError
from evidence.keys import HpkeSuite
from gateway import migrate_command
from gateway.broker.accounts import broker_accounts
from gateway.broker.certificates import ensure_gateway_certificate
from gateway.broker.config import (
    BrokerSettings,
    hash_broker_password,
    new_broker_password,
    refuse_while_running,
    write_broker_config,
)
from gateway.broker.dynsec import DYNSEC_FILE
from gateway.config import GatewayConfig
from gateway.console.daemon import ConsoleDaemon
from gateway.console.user_command import add_user_command, run_user_command
from gateway.console.users import Role, UserDirectory, validate_password, validate_username
from gateway.daemon import GatewayDaemon
from gateway.datadir import GatewayDataDir
from gateway.enrolment.command import add_enroll_command, run_enroll
from gateway.enrolment.enrolment import lift_cutoff, revoke_badge
from gateway.enrolment.listener import DEFAULT_PORT
from gateway.errors import GatewayError
from gateway.export.export import ExportRequest, export_incident
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import open_ledger
from gateway.logging_setup import configure_logging
from gateway.maintenance import cli as maintenance
from gateway.naming import check_name

DEFAULT_DATA_DIR = Path(os.environ.get("MEDBADGE_GATEWAY_DATA", "/var/lib/medbadge-gateway"))
_SUITES = {"x25519": HpkeSuite.X25519, "mlkem768-x25519": HpkeSuite.MLKEM768_X25519}
# The gateway itself reaches the broker on this machine; the server certificate always
# names it, whatever names badges use.
_LOOPBACK_NAMES = ("localhost",)
_LOOPBACK_IPS = ("127.0.0.1",)
_ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - badges reach the TLS listener over the network


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="gateway data directory (default: $MEDBADGE_GATEWAY_DATA or %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create the hospital's keys, evidence CA and database")
    init.add_argument("--hospital", required=True, help="hospital name, as certificates show it")
    init.add_argument(
        "--suite",
        choices=sorted(_SUITES),
        default="x25519",
        help="HPKE suite for footage encryption (mlkem768-x25519 for evidence kept for decades)",
    )
    init.add_argument(
        "--admin",
        metavar="USER",
        help="create the first console administrator USER (password prompted, or from a file)",
    )
    init.add_argument(
        "--admin-password-file",
        type=Path,
        help="the first administrator's password (at least 12 characters), instead of a prompt",
    )
    passphrase = init.add_mutually_exclusive_group()
    passphrase.add_argument(
        "--custodian-passphrase-file",
        type=Path,
        help="protect the custodian private key with the passphrase in this file",
    )
    passphrase.add_argument(
        "--ask-custodian-passphrase",
        action="store_true",
        help="protect the custodian private key with a passphrase typed at a prompt",
    )

    add_enroll_command(commands, default_listen=f"{_ALL_INTERFACES}:{DEFAULT_PORT}")

    revoke = commands.add_parser(
        "revoke", help="revoke a badge: the running gateway closes its broker login at once"
    )
    revoke.add_argument("badge_id", help="the badge to revoke")
    revoke.add_argument("--reason", required=True, help="why (lost, stolen, retired...; recorded)")
    revoke.add_argument("--operator", default=getpass.getuser(), help="who revokes (recorded)")
    lift = commands.add_parser(
        "lift-cutoff", help="let a badge cut off for flooding log in to the broker again"
    )
    lift.add_argument("badge_id", help="the badge whose cut-off to lift")
    lift.add_argument("--operator", default=getpass.getuser(), help="who lifts it (recorded)")

    broker = commands.add_parser(
        "broker-config", help="write the mosquitto configuration: accounts, ACL, TLS"
    )
    broker.add_argument(
        "--out", type=Path, help="broker directory (default: paths.broker_dir, DATA/broker)"
    )
    broker.add_argument("--tls-port", type=int, default=8883, help="TLS listener port")
    broker.add_argument(
        "--plain-port", type=int, help="also listen for plain MQTT on 127.0.0.1 (development)"
    )
    broker.add_argument(
        "--bind", default=_ALL_INTERFACES, help="address of the TLS listener (default: all)"
    )
    broker.add_argument(
        "--hostname",
        action="append",
        default=[],
        help="a name badges use for the broker (repeatable; localhost is always included)",
    )
    broker.add_argument(
        "--ip",
        action="append",
        default=[],
        help="an address badges use for the broker (repeatable; 127.0.0.1 is always included)",
    )
    broker.add_argument(
        "--broker-user",
        default="mosquitto",
        help="account mosquitto runs as; when run as root, its files are handed to it",
    )
    broker.add_argument(
        "--reset-accounts",
        action="store_true",
        help="rewrite the broker's accounts from the registry (only while mosquitto is stopped; "
        "otherwise they are written only when there are none yet)",
    )
    broker.add_argument(
        "--badge-auth",
        choices=("password", "certificate"),
        default="password",
        help="how clients log in on the TLS listener: certificate = the evidence CA's client "
        "certificates, no passwords (badges enrolled with a CSR; decision 1902)",
    )
    broker.add_argument("--config", type=Path, help="configuration (default: DATA/gateway.toml)")

    run = commands.add_parser("run", help="run the gateway daemon (intake, alerts, webhooks)")
    run.add_argument("--config", type=Path, help="configuration (default: DATA/gateway.toml)")
    console = commands.add_parser(
        "console", help="serve the security console (its own process, beside 'gateway run')"
    )
    console.add_argument("--config", type=Path, help="configuration (default: DATA/gateway.toml)")
    _add_export_command(commands)
    migrate_command.add_command(commands)
    maintenance.add_commands(commands)
    add_user_command(commands)
    return parser


def _custodian_passphrase(args: argparse.Namespace) -> bytes | None:
    passphrase_file: Path | None = args.custodian_passphrase_file
    if passphrase_file is not None:
        passphrase = passphrase_file.read_bytes().rstrip(b"\r\n")
    elif args.ask_custodian_passphrase:
        passphrase = getpass.getpass("custodian key passphrase: ").encode()
        if getpass.getpass("again: ").encode() != passphrase:
            raise GatewayError("the two passphrases differ; nothing was created")
    else:
        return None
    if len(passphrase) < 12:
        raise GatewayError("the custodian passphrase must have at least 12 characters")
    return passphrase


def _admin_password(args: argparse.Namespace) -> str | None:
    """The first administrator's password, asked before anything is created."""
    if args.admin is None:
        if args.admin_password_file is not None:
            raise GatewayError("--admin-password-file needs --admin USER")
        return None
    validate_username(args.admin)
    password_file: Path | None = args.admin_password_file
    if password_file is not None:
        password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for console administrator {args.admin}: ")
        if getpass.getpass("again: ") != password:
            raise GatewayError("the two passwords differ; nothing was created")
    return validate_password(password)


def create_first_admin(data_dir: GatewayDataDir, username: str, password: str) -> None:
    """Create a console administrator, recorded in the custody log as a user change."""
    storage = data_dir.storage()
    try:
        UserDirectory(storage.users).create(
            username, password, Role.ADMIN, created_by="gateway init"
        )
        custody = CustodyLog(open_ledger(data_dir, storage))
        custody.record(
            "gateway init", "user-change", username, detail={"change": "created", "role": "admin"}
        )
    finally:
        storage.close()


def _run(args: argparse.Namespace) -> int:
    data_dir = GatewayDataDir(args.data, getattr(args, "config", None))
    if args.command == "init":
        check_name(args.hospital, "hospital name")
        admin_password = _admin_password(args)
        data_dir.initialise(args.hospital, _SUITES[args.suite], _custodian_passphrase(args))
        print(f"initialised gateway data directory {data_dir.root} for {args.hospital}")
        if args.admin is not None and admin_password is not None:
            create_first_admin(data_dir, args.admin, admin_password)
            print(f"console administrator {args.admin} created")
        return 0
    if args.command == "broker-config":
        return _broker_config(args, data_dir)
    if args.command == "run":
        return _run_daemon(args, data_dir)
    if args.command == "console":
        return _run_console(args, data_dir)
    if args.command == "export":
        return _export(args, data_dir)
    if args.command == migrate_command.COMMAND:
        return migrate_command.run(args, data_dir)
    if args.command in maintenance.COMMANDS:
        return maintenance.run(args, data_dir)
    if args.command == "revoke":
        revoke_badge(data_dir, args.badge_id, operator=args.operator, reason=args.reason)
        print(f"revoked badge {args.badge_id}; a running gateway closes its broker login now")
        return 0
    if args.command == "lift-cutoff":
        lift_cutoff(data_dir, args.badge_id, operator=args.operator)
        print(f"lifted the cut-off of badge {args.badge_id}; it may log in to the broker again")
        return 0
    if args.command == "user":
        return run_user_command(args, data_dir)
    return run_enroll(args, data_dir, all_interfaces=_ALL_INTERFACES)


def _broker_config(args: argparse.Namespace, data_dir: GatewayDataDir) -> int:
    """Write the broker's files from the badge registry and the gateway's own account."""
    data_dir.require_initialised()
    config = GatewayConfig.load(data_dir.root, args.config)
    out: Path = args.out or config.paths.broker_dir
    account = config.broker
    _ensure_gateway_password(account.password_file)
    password = account.read_password()
    accounts = broker_accounts(
        data_dir, hash_broker_password(password), gateway_username=account.username
    )
    settings = BrokerSettings(
        tls_port=args.tls_port,
        plain_port=args.plain_port,
        bind_tls=args.bind,
        run_as_user=args.broker_user,
        badge_auth=args.badge_auth,
    )
    kept = (out / DYNSEC_FILE).exists() and not args.reset_accounts
    if args.reset_accounts:
        refuse_while_running(out, settings)
    if args.badge_auth == "certificate" and ensure_gateway_certificate(data_dir, account.username):
        print(f"issued the gateway's broker certificate ({account.username}) in {data_dir.keys}")
    config_path = write_broker_config(
        out,
        accounts,
        settings,
        data_dir.evidence_ca(),
        server_hostnames=_unique([*_LOOPBACK_NAMES, *args.hostname]),
        server_ips=_unique([*_LOOPBACK_IPS, *args.ip]),
        reset_accounts=args.reset_accounts,
    )
    if kept:
        print(
            f"wrote {config_path}; kept the broker's accounts in {out / DYNSEC_FILE}: the "
            "broker owns them now and 'gateway run' keeps them in step with the registry "
            "(--reset-accounts rewrites them, with the broker stopped)"
        )
    else:
        badges = len(accounts) - 1
        print(
            f"wrote {config_path}: {badges} badge account(s) and the gateway account "
            f"{account.username!r} (password in {account.password_file})"
        )
    if not args.hostname and not args.ip:
        print(
            "note: the server certificate names only this machine; badges on the network "
            "need --hostname or --ip with the name they connect to"
        )
    print(f"start the broker with: mosquitto -c {config_path}")
    print(
        "restart a running broker only for a changed listener or certificate "
        "(systemctl restart mosquitto): enrolments, rotations, revocations and cut-offs "
        "reach it at once through the running gateway, without one"
    )
    return 0


def _ensure_gateway_password(path: Path) -> None:
    """Make the gateway account's broker password once (0600); later runs re-use it."""
    if not path.exists():
        try:
            secret = new_broker_password().encode("ascii") + b"\n"
            write_durably(path, secret, 0o600, replace=False)
        except FileExistsError:
            pass  # made at the same moment by another run: use that one
        else:
            _give_to_directory_owner(path)


def _give_to_directory_owner(path: Path) -> None:
    """Run as root, hand a new file to its directory's owner (the gateway's service account)."""
    if os.geteuid() != 0:
        return
    directory = path.parent.stat()
    os.chown(path, directory.st_uid, directory.st_gid)


def _unique(values: Sequence[str]) -> list[str]:
    """``values`` without repeats, in order."""
    return list(dict.fromkeys(values))


def _run_daemon(args: argparse.Namespace, data_dir: GatewayDataDir) -> int:
    """``gateway run``: the daemon, until SIGTERM."""
    config = GatewayConfig.load(data_dir.root, args.config)
    configure_logging(config.log_level)
    return GatewayDaemon(data_dir, config).run()


def _run_console(args: argparse.Namespace, data_dir: GatewayDataDir) -> int:
    """``gateway console``: the console, until SIGTERM."""
    config = GatewayConfig.load(data_dir.root, args.config)
    configure_logging(config.log_level)
    return ConsoleDaemon(data_dir, config).run()


def _add_export_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``gateway export INCIDENT_ID -o FILE.zip --actor NAME --justification TEXT``."""
    export = commands.add_parser(
        "export", help="write an incident's court package (recorded in the custody log)"
    )
    export.add_argument("incident_id", help="the incident to export")
    export.add_argument("-o", "--output", type=Path, required=True, help="the new .zip file")
    export.add_argument("--actor", required=True, help="who exports (recorded)")
    export.add_argument("--justification", required=True, help="why (recorded; required)")
    export.add_argument("--badge", help="the badge, when two badges used the same incident id")
    export.add_argument(
        "--custodian-passphrase-file",
        type=Path,
        help="the passphrase of the custodian key, if it has one",
    )
    export.add_argument(
        "--no-mp4", action="store_true", help="leave out the browser-playable derived MP4"
    )


def _export(args: argparse.Namespace, data_dir: GatewayDataDir) -> int:
    """``gateway export``: the package, then what it holds and how a court checks it."""
    passphrase_file: Path | None = args.custodian_passphrase_file
    request = ExportRequest(
        incident_id=args.incident_id,
        output=args.output,
        actor=args.actor,
        justification=args.justification,
        badge_id=args.badge,
        custodian_passphrase=(
            None if passphrase_file is None else passphrase_file.read_bytes().rstrip(b"\r\n")
        ),
        derived_mp4=not args.no_mp4,
    )
    result = export_incident(data_dir, request)
    print(
        f"exported incident {result.incident_id} of badge {result.badge_id} (segments "
        f"{result.first_seq}..{result.last_seq}) to {result.path} ({result.size} bytes)"
    )
    print(
        f"recorded as custody entry {result.custody_index}; sealed by checkpoint "
        f"{result.checkpoint.number} (size {result.checkpoint.size})"
    )
    print(f"a court checks it with: evidence verify {result.path} (or by its VERIFY.txt)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gateway command line; exit 0 on success, 1 on a refused operation, 2 on usage."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (GatewayError, EvidenceError, OSError) as error:
        print(f"gateway {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
