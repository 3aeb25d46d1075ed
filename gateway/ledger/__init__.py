"""The ledger: the Merkle log and its checkpoints, the custody log, and retention."""

__all__ = [
    "audit",
    "custody",
    "ledger",
    "retention",
    "schedule",
]
"""The modules of this package."""
