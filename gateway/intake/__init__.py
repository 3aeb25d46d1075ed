"""The intake: badge messages from the broker, checked, reassembled, stored and receipted."""

__all__ = [
    "acks",
    "catalogue",
    "checks",
    "clock",
    "cutoff",
    "intake",
    "log_limit",
    "quarantine",
    "reassembly",
    "segments",
    "service",
    "stage",
]
"""The modules of this package."""
