"""The one-time code as a QR code: for a terminal (``gateway enroll``) and for the console.

The QR code carries ``medbadge-enrol:CODE?badge=BADGE_ID`` so a phone or a badge with a
camera reads the same code the officer could type. It is drawn by ``segno``.
"""

from __future__ import annotations

import io

import segno

from gateway.enrolment.enrolment import IssuedCode


def code_uri(issued: IssuedCode) -> str:
    """What the QR code says: the code and the badge it is for."""
    return f"medbadge-enrol:{issued.code}?badge={issued.badge_id}"


def terminal_qr(issued: IssuedCode) -> str:
    """The QR code drawn in block characters, two modules a line."""
    out = io.StringIO()
    segno.make(code_uri(issued), error="m").terminal(out=out, compact=True)
    return out.getvalue()


def svg_qr(issued: IssuedCode) -> str:
    """The QR code as inline SVG for a page (no XML declaration; nothing from outside in it)."""
    return str(segno.make(code_uri(issued), error="m").svg_inline(scale=4, title="enrolment code"))
