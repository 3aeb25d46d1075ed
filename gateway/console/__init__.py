"""The security console: live alerts, badges, incidents, playback, export and the custody log."""

__all__ = [
    "actions",
    "api",
    "app",
    "auth",
    "casefile",
    "core",
    "court",
    "footage",
    "pages",
    "playback",
    "queries",
    "server",
    "span",
    "users",
]
"""The modules of this package."""
