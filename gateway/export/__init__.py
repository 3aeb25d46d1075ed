"""The court package: one incident exported, written and verified as a court would."""
