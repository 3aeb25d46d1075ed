"""Badge enrolment: a badge's identity, registered here and bundled for its Pi."""

__all__ = [
    "enrolment",
    "registry",
]
"""The modules of this package."""
