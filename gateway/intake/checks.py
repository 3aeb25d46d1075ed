"""The checks every badge message goes through, each turning a failure into a reason code."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from evidence.errors import EvidenceError, VerificationError
from gateway.errors import Reason, RejectedMessageError
from gateway.storage.badges import EnrolledBadge

MAX_INT64 = 2**63 - 1
_T = TypeVar("_T")


def opened(parse: Callable[[], _T], *, key: str = "") -> _T:
    """Run a parser or signature check; its failures become ``malformed`` or ``bad-signature``."""
    try:
        return parse()
    except VerificationError as error:
        raise RejectedMessageError(Reason.BAD_SIGNATURE, str(error), key=key) from None
    except EvidenceError as error:
        raise RejectedMessageError(Reason.MALFORMED, str(error), key=key) from None


def same_badge(named: str, badge: EnrolledBadge, what: str, key: str) -> None:
    """Refuse (``badge-mismatch``) a record naming another badge than the topic it came on."""
    if named != badge.badge_id:
        raise RejectedMessageError(
            Reason.BADGE_MISMATCH,
            f"{what} names badge {named!r} but came on the topic of badge {badge.badge_id}",
            key=key,
        )


def within_int64(where: str, *values: int) -> None:
    """Refuse (``malformed``) numbers the database cannot hold; no real badge sends them."""
    if any(value > MAX_INT64 for value in values):
        raise RejectedMessageError(Reason.MALFORMED, f"{where}: a number exceeds 2^63 - 1")
