"""The ``badge`` command: enrol its own key, run the daemon, press the alert button, status."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from badge.config import BadgeConfig
from badge.control import send_command
from badge.enrolment import HttpTransport, enrol, enrolled_badge_id, enrolment_key
from badge.errors import BadgeError, EnrolmentError
from badge.signer import hardware_signer
from evidence.enrolment import fingerprint
from evidence.errors import EvidenceError

DEFAULT_CONFIG = Path("/etc/medbadge/badge.toml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="badge", description=__doc__)
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="badge.toml (default: %(default)s)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="record: capture, seal, keep the pre-event ring")
    commands.add_parser("press", help="press the alert button (as the wearer would)")
    commands.add_parser("status", help="show ring, sealer, incident and outbox state")
    enroll = commands.add_parser(
        "enroll", help="make this badge's own key and enrol it with a one-time code"
    )
    enroll.add_argument("--gateway", required=True, help="enrolment address gateway enroll gave")
    enroll.add_argument("--code", required=True, help="the one-time enrolment code")
    enroll.add_argument("--badge-id", help="this badge's id (not needed with --rotate)")
    enroll.add_argument("--rotate", action="store_true", help="replace the key with a new one")
    return parser


def _enroll(config: BadgeConfig, args: argparse.Namespace) -> int:
    """``badge enroll``: the key made here, its fingerprint shown, then the exchange."""
    directory = config.badge.bundle
    badge_id: str | None = args.badge_id
    if args.rotate:
        badge_id = enrolled_badge_id(directory)
    if badge_id is None:
        raise EnrolmentError("give this badge's id with --badge-id (gateway enroll prints it)")
    hardware = hardware_signer(config, create=True)
    key = hardware or enrolment_key(directory, rotate=args.rotate)
    print(f"badge key fingerprint: {fingerprint(key.public_key)}")
    transport = HttpTransport(args.gateway)
    bundle = enrol(
        directory, badge_id, args.code, transport, rotate=args.rotate, hardware=hardware
    )
    print(
        f"enrolled badge {badge_id} with {bundle.hospital} (key generation "
        f"{bundle.key_generation}, {bundle.key_origin.value}); its key stays in {directory}"
    )
    print("compare the fingerprint with the one the gateway shows")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the badge command line; 0 on success, 1 on a failure, 2 on usage errors."""
    args = _parser().parse_args(argv)
    try:
        config = BadgeConfig.load(args.config)
        if args.command == "enroll":
            return _enroll(config, args)
        if args.command == "run":
            from badge.daemon import BadgeDaemon  # noqa: PLC0415 - video libraries load only here

            logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
            return BadgeDaemon(config).run()
        answer = send_command(config.badge.control_socket, args.command)
    except (BadgeError, EvidenceError, OSError) as error:
        print(f"badge {args.command}: {error}", file=sys.stderr)
        return 1
    answer.pop("ok", None)
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
