"""The hospital's evidence CA and the certificates it issues."""

__all__ = [
    "ca",
]
"""The modules of this package."""
