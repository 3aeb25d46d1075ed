"""The ``badge`` command: run the daemon, press the alert button, show status."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from badge.config import BadgeConfig
from badge.control import send_command
from badge.errors import BadgeError
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the badge command line; 0 on success, 1 on a failure, 2 on usage errors."""
    args = _parser().parse_args(argv)
    try:
        config = BadgeConfig.load(args.config)
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
