"""How every gateway process logs: to stderr, with the time unless journald adds its own."""

from __future__ import annotations

import logging
import os


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``; under systemd (journald adds its own timestamps) without
    the time."""
    fields = "%(levelname)s %(name)s: %(message)s"
    if "JOURNAL_STREAM" not in os.environ:
        fields = "%(asctime)s " + fields
    logging.basicConfig(level=level.upper(), format=fields)
