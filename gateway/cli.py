"""The ``gateway`` command: initialise a hospital, enrol badges."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from evidence.errors import EvidenceError
from evidence.keys import HpkeSuite
from gateway.datadir import GatewayDataDir
from gateway.enrolment import enroll_badge
from gateway.errors import GatewayError

DEFAULT_DATA_DIR = Path(os.environ.get("MEDBADGE_GATEWAY_DATA", "/var/lib/medbadge-gateway"))
_SUITES = {"x25519": HpkeSuite.X25519, "mlkem768-x25519": HpkeSuite.MLKEM768_X25519}


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

    enroll = commands.add_parser("enroll", help="create a badge identity and its bundle")
    enroll.add_argument("badge_id", help="badge id: lowercase letters, digits and hyphens")
    enroll.add_argument("-o", "--bundle", type=Path, help="bundle directory (default: ./BADGE_ID)")
    enroll.add_argument("--wearer", default="", help="who wears the badge")
    enroll.add_argument("--location", default="", help="default location label, e.g. 'ER'")
    enroll.add_argument("--broker-host", default="localhost", help="broker host the badge uses")
    enroll.add_argument("--broker-port", type=int, default=8883, help="broker TLS port")
    enroll.add_argument("--rotate", action="store_true", help="replace an enrolled badge's key")
    enroll.add_argument("--operator", default=getpass.getuser(), help="who enrols (recorded)")
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


def _run(args: argparse.Namespace) -> int:
    data_dir = GatewayDataDir(args.data)
    if args.command == "init":
        data_dir.initialise(args.hospital, _SUITES[args.suite], _custodian_passphrase(args))
        print(f"initialised gateway data directory {data_dir.root} for {args.hospital}")
        return 0
    bundle = args.bundle or Path(args.badge_id)
    enrolled = enroll_badge(
        data_dir,
        args.badge_id,
        bundle,
        wearer=args.wearer,
        location=args.location,
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        operator=args.operator,
        rotate=args.rotate,
    )
    verb = "rotated" if enrolled.key_generation > 1 else "enrolled"
    print(f"{verb} badge {enrolled.badge_id} (key generation {enrolled.key_generation});")
    print(f"copy {bundle} to the badge (it holds the badge's private key: keep it secret)")
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
