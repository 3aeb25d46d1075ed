"""The broker: mosquitto's configuration, accounts and ACL, generated from the registry."""

__all__ = [
    "accounts",
    "certificates",
    "config",
]
"""The modules of this package."""
