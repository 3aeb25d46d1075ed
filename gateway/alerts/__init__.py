"""Alerts: the badge-signed alert, the live channel to the console, and webhooks."""

__all__ = [
    "alerts",
    "live",
    "webhooks",
]
"""The modules of this package."""
