"""The medbadge hospital gateway: enrolment, intake, vault, ledger, console and export."""

__all__ = [
    "alerts",
    "broker",
    "cli",
    "config",
    "console",
    "daemon",
    "datadir",
    "enrolment",
    "errors",
    "export",
    "intake",
    "ledger",
    "logging_setup",
    "maintenance",
    "monitoring",
    "pki",
    "storage",
    "timestamping",
]
"""The modules of this package."""
