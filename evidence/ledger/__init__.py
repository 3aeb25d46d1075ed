"""The ledger a court checks: RFC 9162 Merkle proofs, signed checkpoints, ledger entries."""
