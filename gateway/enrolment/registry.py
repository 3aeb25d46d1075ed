"""The intake's view of the badge registry: enrolments remembered until someone changes them."""

from __future__ import annotations

from gateway.storage.badges import BadgeRegistry, EnrolledBadge


class EnrolmentView:
    """The intake's fast view of enrolments: ``get`` as the registry's, remembered between
    messages until another connection commits to the database.

    The registry's change token moves whenever another connection commits, so an
    enrolment, a key rotation or a revocation made anywhere (console, command line,
    another process) is seen by the next message, at the cost of one look at the token
    instead of two queries and a key parse. The connection it reads through must not
    change enrolments itself (its own commits do not move the token).
    """

    def __init__(self, registry: BadgeRegistry) -> None:
        """Read enrolments from ``registry``."""
        self._registry = registry
        self._version: int | None = None
        self._badges: dict[str, EnrolledBadge] = {}

    def get(self, badge_id: str) -> EnrolledBadge:
        """The badge's current enrolment; EnrolmentError if it has none."""
        version = self._registry.change_token()
        if version != self._version:
            self._badges.clear()
            self._version = version
        badge = self._badges.get(badge_id)
        if badge is None:
            badge = self._badges[badge_id] = self._registry.get(badge_id)
        return badge
