"""The intake's view of the badge registry: enrolments remembered until someone changes them."""

from __future__ import annotations

from gateway.storage.badges import BadgeRegistry, EnrolledBadge
from gateway.storage.cutoffs import BadgeCutoffs


class EnrolmentView:
    """The intake's fast view of enrolments: ``get`` as the registry's, remembered between
    messages until another connection commits to the database.

    The registry's change token moves whenever another connection commits, so an
    enrolment, a key rotation or a revocation made anywhere (console, command line,
    another process) is seen by the next message, at the cost of one look at the token
    instead of two queries and a key parse. The connection it reads through must not
    change enrolments itself (its own commits do not move the token).
    """

    def __init__(self, registry: BadgeRegistry, cutoffs: BadgeCutoffs | None = None) -> None:
        """Read enrolments from ``registry`` and cut-offs (if given) from ``cutoffs``."""
        self._registry = registry
        self._cutoffs = cutoffs
        self._version: int | None = None
        self._badges: dict[str, EnrolledBadge] = {}
        self._cut_off: set[str] = set()

    def get(self, badge_id: str) -> EnrolledBadge:
        """The badge's current enrolment; EnrolmentError if it has none."""
        self._refresh()
        badge = self._badges.get(badge_id)
        if badge is None:
            badge = self._badges[badge_id] = self._registry.get(badge_id)
        return badge

    def is_cut_off(self, badge_id: str) -> bool:
        """Whether the badge is cut off now (as of the last change another connection made,
        and every ``mark_cut_off`` since)."""
        self._refresh()
        return badge_id in self._cut_off

    def mark_cut_off(self, badge_id: str) -> None:
        """Remember a cut-off this connection just recorded (its own commits move no token)."""
        self._cut_off.add(badge_id)

    def _refresh(self) -> None:
        version = self._registry.change_token()
        if version != self._version:
            self._badges.clear()
            self._version = version
            self._cut_off = set() if self._cutoffs is None else set(self._cutoffs.all())
