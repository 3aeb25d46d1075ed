"""The ledger: the Merkle log and its checkpoints, the custody log, and retention."""
