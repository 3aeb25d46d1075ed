"""The broker: mosquitto's configuration, accounts and ACL, generated from the registry."""

__all__ = [
    "access",
    "accounts",
    "certificates",
    "config",
    "control",
    "dynsec",
    "passwords",
]
"""The modules of this package."""
