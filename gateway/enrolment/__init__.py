"""Badge enrolment: one-time codes, badge-born public keys registered, the listener badges reach."""

__all__ = [
    "command",
    "enrolment",
    "listener",
    "nonces",
    "qr",
    "registry",
]
"""The modules of this package."""
