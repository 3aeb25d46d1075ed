"""MQTT topic names shared by badge and gateway: one versioned prefix, one builder, one parser."""

from __future__ import annotations

import re
from typing import Final

from evidence.errors import EncodingError
from evidence.identifiers import validate_badge_id

PREFIX: Final = "medbadge/v1"

BADGE_KINDS: Final = frozenset({"alert", "heartbeat", "status", "incident", "segment"})
"""What a badge publishes, each on ``medbadge/v1/badge/<badge_id>/<kind>``."""

GATEWAY_KINDS: Final = frozenset({"receipt", "reject"})
"""What the gateway sends back, each on ``medbadge/v1/gateway/<badge_id>/<kind>``."""

ALL_BADGES_FILTER: Final = f"{PREFIX}/badge/#"
"""The filter the gateway subscribes to: every badge's every topic."""

# A shared-subscription group name is one topic level; keep it as tame as a badge id.
_GROUP = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def badge_topic(badge_id: str, kind: str) -> str:
    """Return the topic badge ``badge_id`` publishes ``kind`` messages on."""
    validate_badge_id(badge_id)
    if kind not in BADGE_KINDS:
        raise EncodingError(
            f"badge topic kind {kind!r} is unknown: use one of {sorted(BADGE_KINDS)}"
        )
    return f"{PREFIX}/badge/{badge_id}/{kind}"


def gateway_topic(badge_id: str, kind: str) -> str:
    """Return the topic the gateway sends ``kind`` messages to badge ``badge_id`` on."""
    validate_badge_id(badge_id)
    if kind not in GATEWAY_KINDS:
        raise EncodingError(
            f"gateway topic kind {kind!r} is unknown: use one of {sorted(GATEWAY_KINDS)}"
        )
    return f"{PREFIX}/gateway/{badge_id}/{kind}"


def gateway_filter(badge_id: str) -> str:
    """Return the filter badge ``badge_id`` subscribes to for its receipts and rejections."""
    validate_badge_id(badge_id)
    return f"{PREFIX}/gateway/{badge_id}/#"


def parse_badge_topic(topic: str) -> tuple[str, str]:
    """Return ``(badge_id, kind)`` from a badge topic.

    Raises ``EncodingError`` when the topic is not ``medbadge/v1/badge/<badge_id>/<kind>``
    with a known kind, and ``InvalidIdentifierError`` when the badge id is not allowed.
    """
    return _parse(topic, "badge", BADGE_KINDS)


def parse_gateway_topic(topic: str) -> tuple[str, str]:
    """Return ``(badge_id, kind)`` from a gateway topic (the badge side's parser)."""
    return _parse(topic, "gateway", GATEWAY_KINDS)


def shared_subscription(group: str, topic_filter: str) -> str:
    """Return ``$share/<group>/<topic_filter>``, so several intake workers split one stream.

    The broker hands each message to one member of ``group``; its read ACL is still
    checked against the message's own topic, so the worker account needs no extra grant.
    """
    if not isinstance(group, str) or not _GROUP.fullmatch(group):
        raise EncodingError(
            f"shared subscription group {group!r} is not allowed: use 1-63 lowercase "
            "letters, digits and hyphens"
        )
    if (
        not isinstance(topic_filter, str)
        or not topic_filter
        or topic_filter.startswith("$")
        or "\x00" in topic_filter
    ):
        raise EncodingError(
            f"shared subscription filter {topic_filter!r} is not allowed: give a non-empty "
            "filter that does not start with '$'"
        )
    return f"$share/{group}/{topic_filter}"


def _parse(topic: str, side: str, kinds: frozenset[str]) -> tuple[str, str]:
    """Split ``medbadge/v1/<side>/<badge_id>/<kind>`` and check each level."""
    if not isinstance(topic, str):
        raise EncodingError(f"{side} topic must be a string, got {type(topic).__name__}")
    levels = topic.split("/")
    if len(levels) != 5 or "/".join(levels[:3]) != f"{PREFIX}/{side}":
        raise EncodingError(
            f"topic {topic!r} is not a {side} topic: expected {PREFIX}/{side}/<badge_id>/<kind>"
        )
    badge_id, kind = levels[3], levels[4]
    validate_badge_id(badge_id)
    if kind not in kinds:
        raise EncodingError(
            f"topic {topic!r} has unknown {side} kind {kind!r}: use one of {sorted(kinds)}"
        )
    return badge_id, kind
