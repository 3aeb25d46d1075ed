"""The broker's accounts kept in step with the registry, while the gateway runs.

A badge enrolled or rotated anywhere (command line, console, another process) gets its
client and role at the broker's dynamic security plugin, a revoked badge is deleted, a badge
cut off for flooding is disabled, and one whose cut-off is lifted is enabled again, within a
poll (``POLL_S``) of the change being committed, with no ``broker-config`` and no restart
(decisions 1703, 1704). The registry is the truth: after every (re)connection the broker's
clients are listed and everything that differs is put right (a badge enrolled while the
gateway or the broker was stopped, say), then only what changed is sent.

Which password a client holds cannot be read back from the plugin, so each badge client's
``textdescription`` carries a fingerprint of the registry's password hash
(``dynsec.fingerprint``); ``broker-config`` writes the same one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Final

from gateway.broker.control import NOT_FOUND, BrokerControl
from gateway.broker.dynsec import badge_role, badge_role_document, fingerprint
from gateway.broker.passwords import SECRET_FILE, BadgePasswords
from gateway.datadir import GatewayDataDir
from gateway.errors import BrokerConfigError, BrokerControlError, GatewayError
from gateway.storage.cutoffs import BrokerStanding

log = logging.getLogger(__name__)

POLL_S: Final = 0.2
"""How often the registry is looked at (one cheap query when nothing changed)."""
BATCH: Final = 64
"""Badges handled in one control message (up to four commands each)."""
LIST_PAGE: Final = 500
"""Clients asked for in one ``listClients`` (the answer stays far below a packet's limit)."""
_COMMANDS: Final = {
    "revoked": "deleteClient",
    "cut-off": "disableClient",
    "enrolled": "enableClient",
}
_ALREADY: Final = frozenset({"Role already exists", "Client already exists"})
"""Refusals of a create that mean the thing is there (its password is set next anyway)."""


class BrokerAccess:
    """Applies the registry's enrolments, rotations, revocations and cut-offs to the broker
    (``start``/``stop``)."""

    def __init__(
        self,
        data_dir: GatewayDataDir,
        control: BrokerControl,
        connected: Callable[[], bool],
        *,
        poll_s: float = POLL_S,
    ) -> None:
        """Read ``data_dir``'s registry; send through ``control`` while ``connected()``."""
        self._data_dir = data_dir
        self._control = control
        self._connected = connected
        self._poll_s = poll_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-access", daemon=True)
        self._applied: dict[str, tuple[str, str]] = {}
        """Badge id -> (state, password hash) the broker holds, as far as we know."""
        self._warned: set[tuple[str, str]] = set()
        self._passwords: BadgePasswords | None = None

    def start(self) -> None:
        """Start watching on a thread of its own."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def reconcile(self, accounts: Sequence[BrokerStanding]) -> int:
        """Compare the broker's clients (``listClients``) with ``accounts`` and send every
        command that brings it in step; return how many the broker accepted."""
        held: dict[str, str] = {}
        while True:
            answer = self._control.command(
                {"command": "listClients", "verbose": True, "count": LIST_PAGE, "offset": len(held)}
            )
            page = _listed(answer)
            held.update(page)
            if len(page) < LIST_PAGE:
                break
        self._applied.clear()
        for account in accounts:
            description = held.get(account.badge_id)
            if description is None and account.state == "revoked":
                self._applied[account.badge_id] = (account.state, account.password_hash)
            elif description == fingerprint(account.password_hash) or (
                description == "" and self._derived(account) is None
            ):
                # its password is current (or, written by broker-config before fingerprints,
                # one the gateway could not set anyway): only its state may need sending
                self._applied[account.badge_id] = ("", account.password_hash)
        return self.apply(accounts)

    def apply(self, accounts: Sequence[BrokerStanding]) -> int:
        """Send what differs between ``accounts`` and what was applied; return how many
        commands the broker accepted."""
        changed = [
            account
            for account in accounts
            if self._applied.get(account.badge_id) != (account.state, account.password_hash)
        ]
        accepted = 0
        for start in range(0, len(changed), BATCH):
            batch = changed[start : start + BATCH]
            plans = [self._plan(account) for account in batch]
            commands = [command for plan in plans for command in plan]
            answers = self._control.commands(commands) if commands else []
            position = 0
            for account, plan in zip(batch, plans, strict=True):
                mine = answers[position : position + len(plan)]
                position += len(plan)
                accepted += self._applied_one(account, plan, mine)
        return accepted

    def _plan(self, account: BrokerStanding) -> list[dict[str, object]]:
        """The commands for one badge: its credentials first if they changed, then its state."""
        badge = account.badge_id
        commands: list[dict[str, object]] = []
        known = self._applied.get(badge)
        if account.state != "revoked" and (known is None or known[1] != account.password_hash):
            password = self._password(account)
            if password is not None:
                role = badge_role(badge)
                description = fingerprint(account.password_hash)
                commands += [
                    {"command": "createRole", **badge_role_document(badge)},
                    {
                        "command": "createClient",
                        "username": badge,
                        "password": password,
                        "textdescription": description,
                        "roles": [{"rolename": role}],
                    },
                    # a client that was there gets the new password; the plugin closes a
                    # session that logged in with the old one
                    {
                        "command": "modifyClient",
                        "username": badge,
                        "password": password,
                        "textdescription": description,
                        "roles": [{"rolename": role}],
                    },
                ]
        commands.append({"command": _COMMANDS[account.state], "username": badge})
        return commands

    def _password(self, account: BrokerStanding) -> str | None:
        """The badge's broker password, or None (warned once) if the gateway cannot know it."""
        password = self._derived(account)
        if password is None:
            self._warn(
                account.badge_id,
                "random",
                "broker: badge %s was enrolled with a password the gateway cannot give the "
                "broker: rotate it (gateway enroll %s --rotate) so that its login follows the "
                "registry",
                account.badge_id,
                account.badge_id,
            )
        return password

    def _derived(self, account: BrokerStanding) -> str | None:
        """The badge's derived broker password, or None if its registry hash is of another."""
        if self._passwords is None and (self._data_dir.keys / SECRET_FILE).exists():
            try:
                self._passwords = BadgePasswords.of(self._data_dir)
            except BrokerConfigError as error:
                log.error("broker: %s", error)
        passwords = self._passwords
        if passwords is not None and passwords.matches(
            account.badge_id, account.public_key, account.password_hash
        ):
            return passwords.password(account.badge_id, account.public_key)
        return None

    def _applied_one(
        self,
        account: BrokerStanding,
        plan: Sequence[dict[str, object]],
        answers: Sequence[dict[str, object]],
    ) -> int:
        """Remember what the broker now holds for the badge; log a refusal once."""
        badge, state = account.badge_id, account.state
        accepted = 0
        failed = False
        credentials_set = len(plan) == 1
        for command, answer in zip(plan, answers, strict=True):
            error = answer.get("error")
            name = command["command"]
            if error is None or (name in ("createRole", "createClient") and error in _ALREADY):
                accepted += error is None
                credentials_set = credentials_set or name == "modifyClient"
                continue
            if error == NOT_FOUND and (name == "deleteClient" or (badge, "random") in self._warned):
                continue  # deleted before, never given an account, or named already
            self._warn(
                badge,
                f"{name}:{error}",
                "broker refused %s for badge %s (%s); the gateway tries again when it reconnects",
                name,
                badge,
                error,
            )
            failed = True
        if not failed:  # a later refusal is worth a line again
            self._warned = {
                item for item in self._warned if item[0] != badge or item[1] == "random"
            }
        if credentials_set or state == "revoked":
            self._applied[badge] = (state, account.password_hash)
            if state != "enrolled" and accepted:
                log.warning("broker: badge %s is %s; its connection is closed", badge, state)
            elif len(plan) > 1:
                log.info("broker: badge %s may log in with its current password", badge)
        return accepted

    def _warn(self, badge: str, what: str, message: str, *args: object) -> None:
        """Log ``message % args`` once per badge and cause (``what``)."""
        if (badge, what) not in self._warned:
            self._warned.add((badge, what))
            log.warning(message, *args)

    def _run(self) -> None:
        storage = self._data_dir.storage()
        token: int | None = None
        was_connected = False
        try:
            while not self._stopping.wait(self._poll_s):
                connected = self._connected()
                fresh = connected and not was_connected
                if fresh:
                    token = None  # a new connection (or broker): compare everything once
                was_connected = connected
                now = storage.badges.change_token()
                if not connected or now == token:
                    continue
                try:
                    if token is None:
                        self.reconcile(storage.cutoffs.accounts())
                    else:
                        self.apply(storage.cutoffs.accounts())
                    token = now
                except GatewayError as error:
                    log.error("could not bring the broker's accounts up to date: %s", error)
        finally:
            storage.close()


def _listed(answer: dict[str, object]) -> dict[str, str]:
    """Client name -> its ``textdescription`` ("" if none) from a verbose ``listClients``."""
    data = answer.get("data")
    clients = data.get("clients") if isinstance(data, dict) else None
    if not isinstance(clients, list):
        raise BrokerControlError("the broker's listClients answer has no client list")
    held: dict[str, str] = {}
    for client in clients:
        if isinstance(client, dict) and isinstance(client.get("username"), str):
            description = client.get("textdescription")
            held[client["username"]] = description if isinstance(description, str) else ""
    return held
