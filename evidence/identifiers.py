"""Badge and incident identifiers: one pattern, safe in file names, MQTT topics and ACL patterns."""

from __future__ import annotations

import re

from evidence.errors import InvalidIdentifierError

_IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def validate_badge_id(badge_id: str) -> str:
    """Return ``badge_id`` if it is 1-63 lowercase letters, digits or hyphens (no leading "-").

    The pattern keeps ids safe as file names and as MQTT topic levels (no '/', '+', '#').
    """
    if not isinstance(badge_id, str) or not _IDENTIFIER.fullmatch(badge_id):
        raise InvalidIdentifierError(
            f"badge id {badge_id!r} is not allowed: use 1-63 lowercase letters, digits "
            "and hyphens, starting with a letter or digit"
        )
    return badge_id


def validate_incident_id(incident_id: str) -> str:
    """Return ``incident_id`` if it follows the same pattern as badge ids."""
    if not isinstance(incident_id, str) or not _IDENTIFIER.fullmatch(incident_id):
        raise InvalidIdentifierError(
            f"incident id {incident_id!r} is not allowed: use 1-63 lowercase letters, digits "
            "and hyphens, starting with a letter or digit"
        )
    return incident_id
