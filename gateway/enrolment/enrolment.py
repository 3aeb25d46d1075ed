"""Badge enrolment: a new identity for a badge, registered here and bundled for its Pi."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from evidence.bundle import BrokerCredentials, EnrolmentBundle
from evidence.keys import BadgeIdentity
from gateway.broker.accounts import refuse_reserved
from gateway.broker.config import hash_broker_password, new_broker_password
from gateway.datadir import GatewayDataDir
from gateway.errors import EnrolmentError
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import open_ledger
from gateway.naming import check_name
from gateway.storage.badges import EnrolledBadge


def enroll_badge(
    data_dir: GatewayDataDir,
    badge_id: str,
    bundle_dir: Path,
    *,
    wearer: str = "",
    location: str = "",
    broker_host: str = "localhost",
    broker_port: int = 8883,
    operator: str = "cli",
    rotate: bool = False,
) -> EnrolledBadge:
    """Create ``badge_id``'s key and broker password, register them, write its bundle.

    An id the gateway's own broker accounts use is refused (``refuse_reserved``).
    Re-enrolling an enrolled badge is refused unless ``rotate``; a rotation is recorded
    and the old key stays on file so the footage it signed still verifies. The new key is
    also a custody entry (``enrol`` or ``key-rotation``) in the ledger, by ``operator``.
    """
    if not operator.strip():
        raise EnrolmentError("say who enrols the badge (--operator): the custody log records it")
    refuse_reserved(data_dir, badge_id)
    wearer, location = check_name(wearer, "wearer"), check_name(location, "location")
    check_name(operator, "operator")
    identity = BadgeIdentity.generate(badge_id)
    password = new_broker_password()
    storage = data_dir.storage()
    try:
        custody = CustodyLog(open_ledger(data_dir, storage))
        enrolled = storage.badges.enroll(
            badge_id,
            identity.signing_key.public_key,
            hash_broker_password(password),
            wearer=wearer,
            location=location,
            operator=operator,
            rotate=rotate,
        )
        custody.record(
            operator,
            "enrol" if enrolled.key_generation == 1 else "key-rotation",
            badge_id,
            detail={
                "key_generation": enrolled.key_generation,
                "public_key": enrolled.public_key.raw,
            },
        )
    finally:
        storage.close()
    EnrolmentBundle(
        identity=identity,
        hospital=data_dir.evidence_ca().hospital_name,
        key_generation=enrolled.key_generation,
        custodian_key=data_dir.custodian_public_key(),
        gateway_key=data_dir.signing_key().public_key,
        evidence_ca_pem=data_dir.evidence_ca().certificate.public_bytes(Encoding.PEM),
        broker=BrokerCredentials(broker_host, broker_port, badge_id, password),
    ).write(bundle_dir)
    return enrolled


def revoke_badge(data_dir: GatewayDataDir, badge_id: str, *, operator: str, reason: str) -> None:
    """Revoke ``badge_id``, recorded as an enrolment event and a ``revoke`` custody entry.

    The intake refuses the badge at once; a running gateway deletes its broker account
    within a poll (decision 1703), closing its session and refusing its logins.
    """
    if not reason.strip():
        raise EnrolmentError("say why the badge is revoked (lost, stolen, retired...)")
    storage = data_dir.storage()
    try:
        custody = CustodyLog(open_ledger(data_dir, storage))
        storage.badges.revoke(badge_id, operator=operator, reason=reason)
        custody.record(operator, "revoke", badge_id, reason)
    finally:
        storage.close()


def lift_cutoff(data_dir: GatewayDataDir, badge_id: str, *, operator: str) -> None:
    """Lift the badge's cut-off (decision 1702), recorded as a ``lift-cut-off`` custody entry;
    a running gateway enables its broker account again at once."""
    storage = data_dir.storage()
    try:
        custody = CustodyLog(open_ledger(data_dir, storage))
        lifted = storage.cutoffs.lift(badge_id)
        if lifted is None:
            raise EnrolmentError(f"badge {badge_id} is not cut off")
        custody.record(
            operator, "lift-cut-off", badge_id, detail={"cut_off_at_ns": lifted.cut_off_at_ns}
        )
    finally:
        storage.close()
