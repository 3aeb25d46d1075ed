"""The broker's accounts from the badge registry: one per enrolled badge, plus the gateway."""

from __future__ import annotations

import contextlib

from gateway.broker.config import BrokerAccount
from gateway.config import GATEWAY_ACCOUNT, GatewayConfig
from gateway.datadir import GatewayDataDir
from gateway.errors import EnrolmentError, GatewayConfigError

RESERVED_PREFIX = f"{GATEWAY_ACCOUNT}-"
"""Names the gateway's own broker accounts take (intake workers, the console): no badge's."""


def reserved_names(data_dir: GatewayDataDir) -> frozenset[str]:
    """The broker logins of gateway processes: ``gateway`` and the configured username."""
    names = {GATEWAY_ACCOUNT}
    # a broken gateway.toml is reported where it is used; "gateway" stays reserved
    with contextlib.suppress(GatewayConfigError):
        names.add(GatewayConfig.load(data_dir.root).broker.username)
    return frozenset(names)


def refuse_reserved(data_dir: GatewayDataDir, badge_id: str) -> None:
    """EnrolmentError if ``badge_id`` is, or could become, a gateway process's broker login."""
    if badge_id in reserved_names(data_dir) or badge_id.startswith(RESERVED_PREFIX):
        raise EnrolmentError(
            f"badge id {badge_id!r} is reserved for the gateway's own broker accounts "
            f"('{GATEWAY_ACCOUNT}', '{RESERVED_PREFIX}...' and broker.username): choose another id"
        )


def broker_accounts(
    data_dir: GatewayDataDir, gateway_password_hash: str, *, gateway_username: str = "gateway"
) -> list[BrokerAccount]:
    """Every unrevoked enrolled badge's account, then the gateway process's account.

    A badge logs in with its id and the password from its enrolment bundle (the registry
    holds only its hash); a revoked badge gets no account, so the broker refuses it, and a
    cut-off badge's account is disabled (decision 1702).
    """
    storage = data_dir.storage()
    try:
        badges = storage.badges.all()
        cut_off = storage.cutoffs.all()
    finally:
        storage.close()
    accounts = [
        BrokerAccount(
            badge.badge_id, badge.broker_password_hash, "badge", disabled=badge.badge_id in cut_off
        )
        for badge in badges
        if badge.revoked_at_ns is None
    ]
    clash = [account.username for account in accounts if account.username == gateway_username]
    if clash:
        raise EnrolmentError(
            f"badge {gateway_username!r} has the gateway's broker login name: revoke it "
            f"('gateway revoke {gateway_username} --reason ...') and enrol the badge under "
            "another id"
        )
    accounts.append(BrokerAccount(gateway_username, gateway_password_hash, "gateway"))
    return accounts
