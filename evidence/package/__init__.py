"""The court package: its file layout, reading its files safely, and its VERIFY.txt."""

__all__ = [
    "files",
    "instructions",
    "layout",
]
"""The modules of this package."""
