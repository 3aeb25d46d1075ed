"""Tests for evidence.topics: building, parsing and refusing MQTT topic names."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from evidence.errors import EncodingError, InvalidIdentifierError
from evidence.topics import (
    ALL_BADGES_FILTER,
    BADGE_KINDS,
    GATEWAY_KINDS,
    PREFIX,
    badge_topic,
    gateway_filter,
    gateway_topic,
    parse_badge_topic,
    parse_gateway_topic,
    shared_subscription,
)


def test_prefix_is_versioned() -> None:
    assert PREFIX == "medbadge/v1"
    assert ALL_BADGES_FILTER == "medbadge/v1/badge/#"


@pytest.mark.parametrize("kind", sorted(BADGE_KINDS))
def test_badge_topic_round_trips(kind: str) -> None:
    topic = badge_topic("badge-a", kind)
    assert topic == f"medbadge/v1/badge/badge-a/{kind}"
    assert parse_badge_topic(topic) == ("badge-a", kind)


@pytest.mark.parametrize("kind", sorted(GATEWAY_KINDS))
def test_gateway_topic_round_trips(kind: str) -> None:
    topic = gateway_topic("ward7-04", kind)
    assert topic == f"medbadge/v1/gateway/ward7-04/{kind}"
    assert parse_gateway_topic(topic) == ("ward7-04", kind)


def test_kind_sets_are_the_protocol() -> None:
    assert {"alert", "heartbeat", "status", "incident", "segment"} == BADGE_KINDS
    assert {"receipt", "reject"} == GATEWAY_KINDS


def test_gateway_filter_covers_only_that_badge() -> None:
    assert gateway_filter("badge-a") == "medbadge/v1/gateway/badge-a/#"


@pytest.mark.parametrize(
    "badge_id", ["", "Badge", "a/b", "+", "#", "-lead", "a b", "x" * 64, "badge\n"]
)
def test_bad_badge_ids_are_refused_everywhere(badge_id: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        badge_topic(badge_id, "alert")
    with pytest.raises(InvalidIdentifierError):
        gateway_topic(badge_id, "receipt")
    with pytest.raises(InvalidIdentifierError):
        gateway_filter(badge_id)


@pytest.mark.parametrize(
    ("builder", "kind"),
    [
        (badge_topic, "receipt"),
        (badge_topic, "video"),
        (gateway_topic, "alert"),
        (gateway_topic, ""),
    ],
)
def test_kind_from_the_other_side_is_refused(
    builder: Callable[[str, str], str], kind: str
) -> None:
    with pytest.raises(EncodingError, match="kind"):
        builder("badge-a", kind)


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "medbadge/v1/badge/badge-a",
        "medbadge/v1/badge/badge-a/alert/extra",
        "medbadge/v2/badge/badge-a/alert",
        "medbadge/v1/gateway/badge-a/receipt",
        "/medbadge/v1/badge/badge-a/alert",
        "medbadge/v1/badge/badge-a/receipt",
        "medbadge/v1/badge/badge-a/",
        "$share/g/medbadge/v1/badge/badge-a/alert",
    ],
)
def test_malformed_badge_topic_is_an_encoding_error(topic: str) -> None:
    with pytest.raises(EncodingError):
        parse_badge_topic(topic)


@pytest.mark.parametrize("badge_id", ["BADGE", "+", "#", ""])
def test_bad_id_in_badge_topic_is_an_identifier_error(badge_id: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        parse_badge_topic(f"medbadge/v1/badge/{badge_id}/alert")


def test_non_string_topic_is_an_encoding_error() -> None:
    with pytest.raises(EncodingError):
        parse_badge_topic(b"medbadge/v1/badge/a/alert")  # type: ignore[arg-type]


def test_shared_subscription_form() -> None:
    assert (
        shared_subscription("intake", ALL_BADGES_FILTER) == "$share/intake/medbadge/v1/badge/#"
    )


@pytest.mark.parametrize(
    ("group", "topic_filter"),
    [
        ("", ALL_BADGES_FILTER),
        ("in/take", ALL_BADGES_FILTER),
        ("+", ALL_BADGES_FILTER),
        ("intake", ""),
        ("intake", "$share/other/x"),
        ("intake", "$SYS/#"),
    ],
)
def test_shared_subscription_refuses_bad_parts(group: str, topic_filter: str) -> None:
    with pytest.raises(EncodingError):
        shared_subscription(group, topic_filter)
