"""The badge's signer as its configuration names it: its key file's key, or a hardware token's."""

from __future__ import annotations

from badge.config import BadgeConfig
from evidence.bundle import EnrolmentBundle
from evidence.keys import Signer


def hardware_signer(config: BadgeConfig, *, create: bool = False) -> Signer | None:
    """The token's key when ``[key] store = "pkcs11"`` (made there with ``create``), else None."""
    if config.key.store != "pkcs11":
        return None
    # the PKCS#11 binding loads only on badges that hold their key in hardware
    from badge.hardware_key import HardwareSigner, TokenKey  # noqa: PLC0415

    key = config.key
    where = TokenKey(key.pkcs11_module, key.token_label, key.key_label, key.pin_file)
    return HardwareSigner(where, create=create)


def load_enrolment(config: BadgeConfig) -> EnrolmentBundle:
    """The badge's enrolment, with its key from where the configuration says it is."""
    return EnrolmentBundle.load(config.badge.bundle, hardware_signer(config))
