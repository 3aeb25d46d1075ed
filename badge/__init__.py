"""The medbadge badge: camera, segments, sealing, pre-event ring, alert button and uplink."""

__all__ = [
    "button",
    "capture",
    "cli",
    "config",
    "control",
    "daemon",
    "encoder",
    "enrolment",
    "errors",
    "hardware_key",
    "heartbeat",
    "incident",
    "media",
    "outbox",
    "overlay",
    "privacy",
    "receipts",
    "ring",
    "sealer",
    "segmenter",
    "signer",
    "sources",
    "uplink",
    "uplink_session",
]
"""The modules of this package."""
