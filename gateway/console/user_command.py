"""``gateway user``: console accounts from the command line, for when nobody can log in.

``add`` (the password prompted twice, or one line from stdin with ``--password-stdin``;
never in argv, where ``ps`` and the shell history would show it), ``list`` (roles, disabled,
two-step login, failed logins by address), ``disable``/``enable``, ``reset-password`` and
``reset-2fa`` (both end the user's sessions), and ``unlock`` (clears the login delay of
decision 1760). Every change is a custody entry ``user-change``, as in the console.
"""

from __future__ import annotations

import argparse
import getpass
import math
import sys

from gateway.console.login_limits import LoginLimiter
from gateway.console.second_factor import SecondFactor, SecretBox, second_factor_key_path
from gateway.console.users import (
    Role,
    UserDirectory,
    parse_role,
    validate_password,
    validate_username,
)
from gateway.datadir import GatewayDataDir
from gateway.errors import ConsoleError
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import open_ledger
from gateway.storage import Storage

__all__ = ["add_user_command", "run_user_command"]


def add_user_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``gateway user add|list|disable|enable|reset-password|reset-2fa|unlock``."""
    user = commands.add_parser("user", help="console users: add, list, disable, reset, unlock")
    user.add_argument(
        "--operator",
        default=getpass.getuser(),
        help="who makes the change (recorded in the custody log; default: this account)",
    )
    actions = user.add_subparsers(dest="user_command", required=True)
    # no abbreviations: "--password SECRET" must be an error, not --password-stdin
    add = actions.add_parser(
        "add", help="add a console user (the password is prompted)", allow_abbrev=False
    )
    add.add_argument("username", help="1-64 lowercase letters, digits, '.', '-' or '_'")
    add.add_argument(
        "--role", required=True, choices=[role.value for role in Role], help="the user's role"
    )
    _password_stdin(add)
    actions.add_parser("list", help="every user: role, state, two-step login, failed logins")
    for name, text in (
        ("disable", "disable a user (no more logins; their sessions end)"),
        ("enable", "enable a disabled user again"),
        ("unlock", "clear a user's login delay from every address"),
        ("reset-2fa", "remove a user's two-step login (a lost phone); their sessions end"),
    ):
        actions.add_parser(name, help=text).add_argument("username")
    reset = actions.add_parser(
        "reset-password",
        help="give a user a new password (prompted); their sessions end",
        allow_abbrev=False,
    )
    reset.add_argument("username")
    _password_stdin(reset)


def _password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of a prompt",
    )


def run_user_command(args: argparse.Namespace, data_dir: GatewayDataDir) -> int:
    """Run ``gateway user ...``; ConsoleError (exit 1) says what was refused."""
    data_dir.require_initialised()
    command: str = args.user_command
    password = ""
    if command in ("add", "reset-password"):
        validate_username(args.username)
        password = _read_password(args.username, args.password_stdin)
    storage = data_dir.storage()
    try:
        admin = _Administration(data_dir, storage, args.operator)
        if command == "list":
            print(admin.listing())
        elif command == "add":
            admin.add(args.username, parse_role(args.role), password)
            print(f"console user {args.username} ({args.role}) created")
        elif command == "reset-password":
            admin.reset_password(args.username, password)
            print(f"new password set for {args.username}; their sessions are ended")
        elif command == "reset-2fa":
            admin.reset_second_factor(args.username)
            print(f"two-step login of {args.username} removed; they set it up at next login")
        elif command == "unlock":
            count = admin.unlock(args.username)
            print(f"{args.username} unlocked ({count} address(es) cleared)")
        else:
            admin.set_disabled(args.username, command == "disable")
            print(f"{args.username} {command}d")
    finally:
        storage.close()
    return 0


def _read_password(username: str, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        prompt = getpass.getpass
        password = prompt(f"password for console user {username}: ")
        if prompt("again: ") != password:
            raise ConsoleError("the two passwords differ; nothing was changed")
    return validate_password(password)


class _Administration:
    """The changes, each with its custody entry, on one opened storage."""

    def __init__(self, data_dir: GatewayDataDir, storage: Storage, operator: str) -> None:
        self._storage = storage
        self._operator = operator.strip() or "gateway user"
        self._users = UserDirectory(storage.users)
        self._sessions = storage.sessions
        self._limiter = LoginLimiter(storage.login_failures)
        self._factors = SecondFactor(
            storage.second_factors, SecretBox(second_factor_key_path(data_dir.keys))
        )
        self._custody = CustodyLog(open_ledger(data_dir, storage, verify=False))

    def listing(self) -> str:
        rows = [("USER", "ROLE", "STATE", "TWO-STEP LOGIN", "FAILED LOGINS")]
        for user in self._users.all():
            locks = self._limiter.locks(user.username)
            failed = "; ".join(
                f"{lock.failures} from {lock.client}"
                + (f" (waits {math.ceil(lock.retry_after_s)} s)" if lock.retry_after_s else "")
                for lock in locks
            )
            rows.append(
                (
                    user.username,
                    user.role.value,
                    "disabled" if user.disabled else "active",
                    self._factors.state(user.username, user.role).summary,
                    failed or "none",
                )
            )
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
            + "  "
            + row[4]
            for row in rows
        )

    def add(self, username: str, role: Role, password: str) -> None:
        with self._storage.transaction():
            self._users.create(username, password, role, created_by=self._operator)
            self._record(username, {"change": "created", "role": role.value})

    def reset_password(self, username: str, password: str) -> None:
        with self._storage.transaction():
            self._users.set_password(username, password)
            self._sessions.remove_user(username)
            self._record(username, {"change": "password"})

    def reset_second_factor(self, username: str) -> None:
        self._users.require(username)
        with self._storage.transaction():
            self._factors.reset(username)
            self._sessions.remove_user(username)
            self._record(username, {"change": "reset-second-factor"})

    def unlock(self, username: str) -> int:
        self._users.require(username)
        with self._storage.transaction():
            count = self._limiter.unlock(username)
            self._record(username, {"change": "unlock", "addresses": count})
        return count

    def set_disabled(self, username: str, disabled: bool) -> None:
        target = self._users.require(username)
        last_admin = target.role is Role.ADMIN and not target.disabled
        if disabled and last_admin and self._users.active_admins() <= 1:
            raise ConsoleError("the last administrator cannot be disabled")
        with self._storage.transaction():
            self._users.set_disabled(username, disabled)
            if disabled:
                self._sessions.remove_user(username)
            self._record(username, {"change": "disable" if disabled else "enable"})

    def _record(self, username: str, detail: dict[str, str | int]) -> None:
        self._custody.record(self._operator, "user-change", username, detail=detail)
