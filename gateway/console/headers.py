"""The security headers on every console response, and those only sent over TLS."""

from __future__ import annotations

__all__ = ["SECURITY_HEADERS", "TLS_HEADERS"]

SECURITY_HEADERS = (
    (
        b"content-security-policy",
        # media-src blob: lets the player hand its MediaSource (footage it fetched from
        # here) to the <video>; nothing else may be loaded from anywhere but the console
        b"default-src 'self'; img-src 'self' data:; media-src 'self' blob:; object-src 'none'; "
        b"base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" even on
    # the console's own forms, and the Origin check (gateway.console.origin) needs the real one
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (
        b"permissions-policy",
        b"camera=(), microphone=(), geolocation=(), usb=(), serial=(), bluetooth=(), hid=(), "
        b"payment=(), midi=(), magnetometer=(), gyroscope=(), accelerometer=(), "
        b"display-capture=(), screen-wake-lock=(), publickey-credentials-get=()",
    ),
)
"""Headers on every console response."""
TLS_HEADERS = (
    (b"strict-transport-security", b"max-age=31536000"),
)
"""Headers only on responses served over TLS (a browser ignores HSTS over plain HTTP)."""
