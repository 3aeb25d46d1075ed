"""The broker: mosquitto's configuration, accounts and ACL, generated from the registry."""

__all__ = [
    "access",
    "accounts",
    "config",
    "control",
    "dynsec",
]
"""The modules of this package."""
