"""The ``evidence`` command: ``evidence verify PACKAGE`` checks an evidence package offline."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from evidence.errors import EvidenceError, PackageError
from evidence.keys import SigningPublicKey
from evidence.ledger.checkpoint import parse_vkey
from evidence.text import json_escape_unsafe
from evidence.verify import verify_package

EXIT_VERIFIED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """An argument the command cannot use (a file that is missing or of the wrong kind)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evidence",
        description="Check medbadge evidence packages offline, trusting neither the hospital "
        "nor the vendor: exit 0 when every check holds, 1 when any fails, 2 on usage errors.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "verify", help="verify an evidence package (its zip, or the folder it was unpacked into)"
    )
    verify.add_argument("package", type=Path, help="the package zip or unpacked folder")
    verify.add_argument("--json", action="store_true", help="print the report as one JSON object")
    verify.add_argument(
        "--gateway-key",
        type=Path,
        help="the hospital's gateway public key (PEM, or its vkey line) to require",
    )
    verify.add_argument(
        "--ca", type=Path, help="the hospital's evidence CA certificate (PEM) to require"
    )
    return parser


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read the {what} {path}: {error.strerror}") from None


def _gateway_key(path: Path) -> SigningPublicKey:
    data = _read(path, "gateway key")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return SigningPublicKey.from_pem(data, path)
        return SigningPublicKey(parse_vkey(data.decode("ascii").strip()).public_key)
    except (EvidenceError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is neither a PEM Ed25519 key nor a vkey: {error}") from None


def _ca_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path, "CA certificate"))
    except ValueError as error:
        raise UsageError(f"{path} is not a PEM certificate: {error}") from None


def _verify(args: argparse.Namespace) -> int:
    report = verify_package(
        args.package,
        gateway_key=None if args.gateway_key is None else _gateway_key(args.gateway_key),
        ca_certificate=None if args.ca is None else _ca_certificate(args.ca),
    )
    try:
        if args.json:
            document = json.dumps(report.as_dict(), indent=2, ensure_ascii=False)
            print(json_escape_unsafe(document), flush=True)
        else:
            print(report.human(), end="", flush=True)
    except BrokenPipeError:  # the reader (head, a pager) stopped early: the status still holds
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_VERIFIED if report.verified else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit status (0 verified, 1 failed, 2 usage error)."""
    args = _parser().parse_args(argv)
    try:
        return _verify(args)
    except (UsageError, PackageError) as error:
        print(f"evidence {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
