"""The ledger a court checks: RFC 9162 Merkle proofs, signed checkpoints, ledger entries."""

__all__ = [
    "checkpoint",
    "entry",
    "merkle",
]
"""The modules of this package."""
