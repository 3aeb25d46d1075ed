"""The ``gateway enroll`` command: a one-time code printed, then the listener until it is used."""

from __future__ import annotations

import argparse
import getpass
import time

from gateway.datadir import GatewayDataDir
from gateway.enrolment.enrolment import (
    DEFAULT_CODE_SECONDS,
    Acceptance,
    IssuedCode,
    issue_code,
)
from gateway.enrolment.listener import EnrolmentListener
from gateway.enrolment.qr import terminal_qr
from gateway.errors import GatewayError


def add_enroll_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], *, default_listen: str
) -> None:
    """``gateway enroll BADGE_ID``: a one-time code, then the listener until the badge enrols."""
    enroll = commands.add_parser(
        "enroll", help="issue a one-time code with which a badge enrols the key it made itself"
    )
    enroll.add_argument(
        "badge_id", nargs="?", help="badge id: lowercase letters, digits and hyphens"
    )
    enroll.add_argument("--wearer", default="", help="who wears the badge")
    enroll.add_argument("--location", default="", help="default location label, e.g. 'ER'")
    enroll.add_argument("--broker-host", default="localhost", help="broker host the badge uses")
    enroll.add_argument("--broker-port", type=int, default=8883, help="broker TLS port")
    enroll.add_argument("--rotate", action="store_true", help="give an enrolled badge a new key")
    enroll.add_argument("--operator", default=getpass.getuser(), help="who enrols (recorded)")
    enroll.add_argument(
        "--minutes", type=int, default=DEFAULT_CODE_SECONDS // 60, help="how long the code lasts"
    )
    enroll.add_argument(
        "--listen",
        default=default_listen,
        help="address:port of the enrolment listener badges reach (default: %(default)s)",
    )
    mode = enroll.add_mutually_exclusive_group()
    mode.add_argument(
        "--no-serve",
        action="store_true",
        help="only issue the code; a running 'gateway enroll --serve' takes the badge's request",
    )
    mode.add_argument(
        "--serve",
        action="store_true",
        help="without BADGE_ID: serve codes issued elsewhere (the console) until interrupted",
    )


def _listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise GatewayError(f"--listen {text!r} is not ADDRESS:PORT")
    return host, int(port)


def _print_acceptance(acceptance: Acceptance) -> None:
    enrolled = acceptance.enrolled
    verb = "rotated" if enrolled.key_generation > 1 else "enrolled"
    print(
        f"{verb} badge {enrolled.badge_id} (key generation {enrolled.key_generation}, "
        f"{enrolled.key_origin}), by {acceptance.operator}"
    )
    print(f"badge key fingerprint: {acceptance.fingerprint}")
    print(
        "compare it with the fingerprint the badge shows; if they differ, revoke the badge",
        flush=True,
    )


def run_enroll(args: argparse.Namespace, data_dir: GatewayDataDir, *, all_interfaces: str) -> int:
    """Issue the code, print it and how the badge uses it, then serve until it is used."""
    host, port = _listen_address(args.listen)
    if args.badge_id is None:
        if not args.serve:
            raise GatewayError("name the badge to enrol, or give --serve to serve issued codes")
        return _serve_codes(data_dir, host, port)
    if args.serve:
        raise GatewayError("--serve takes no BADGE_ID: it serves codes issued elsewhere")
    data_dir.require_initialised()
    issued = issue_code(
        data_dir,
        args.badge_id,
        wearer=args.wearer,
        location=args.location,
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        operator=args.operator,
        rotate=args.rotate,
        seconds=args.minutes * 60,
    )
    if args.no_serve:
        _print_code(issued, args.minutes, "GATEWAY:PORT")
        print(
            "once the badge has enrolled, a running gateway gives the broker its login within "
            "a second (no broker restart); a stopped one does so when 'gateway run' starts"
        )
        return 0
    accepted: list[Acceptance] = []
    # listening before the code is shown, so a badge quick to use it finds the door open
    listener = EnrolmentListener(data_dir, host, port, on_enrolled=accepted.append)
    try:
        where = listener.url.removeprefix("http://")
        if host == all_interfaces:
            where = "THIS-GATEWAY:" + where.rpartition(":")[2]
        _print_code(issued, args.minutes, where)
        deadline = time.monotonic() + (issued.expires_at_ns - time.time_ns()) / 1e9
        listener.serve_until(lambda: _enrolled(accepted, issued), deadline)
    finally:
        listener.close()
    for acceptance in accepted:
        _print_acceptance(acceptance)
    if not _enrolled(accepted, issued):
        raise GatewayError(f"the code for badge {issued.badge_id} expired unused; enrol again")
    print(
        "a running gateway gives the broker the badge's login within a second (no broker "
        "restart); if the gateway is stopped, it does so when 'gateway run' starts"
    )
    return 0


def _enrolled(accepted: list[Acceptance], issued: IssuedCode) -> bool:
    return any(acceptance.enrolled.badge_id == issued.badge_id for acceptance in accepted)


def _print_code(issued: IssuedCode, minutes: int, where: str) -> None:
    print(f"one-time enrolment code for badge {issued.badge_id}: {issued.code}")
    print(terminal_qr(issued), end="")
    print(f"valid for {minutes} minutes, once; on the badge run:")
    which = "--rotate" if issued.rotate else f"--badge-id {issued.badge_id}"
    print(f"  badge enroll --gateway http://{where} {which} --code {issued.code}", flush=True)


def _serve_codes(data_dir: GatewayDataDir, host: str, port: int) -> int:
    """Serve every issued code until interrupted."""
    data_dir.require_initialised()
    listener = EnrolmentListener(data_dir, host, port, on_enrolled=_print_acceptance)
    print(f"serving enrolment requests on {listener.url} until interrupted (Ctrl-C)", flush=True)
    try:
        listener.serve_until(lambda: False)
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
    return 0
