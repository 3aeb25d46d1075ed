"""The court package: one incident exported, written and verified as a court would."""

__all__ = [
    "export",
    "remux",
    "staging",
    "writer",
]
"""The modules of this package."""
