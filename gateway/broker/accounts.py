"""The broker's accounts from the badge registry: one per enrolled badge, plus the gateway."""

from __future__ import annotations

from gateway.broker.config import BrokerAccount
from gateway.datadir import GatewayDataDir


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
    accounts.append(BrokerAccount(gateway_username, gateway_password_hash, "gateway"))
    return accounts
