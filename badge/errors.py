"""The badge's errors: one hierarchy, each saying what failed and what to do."""

from __future__ import annotations


class BadgeError(Exception):
    """Base of every error the badge raises."""


class ConfigError(BadgeError):
    """The badge configuration file is missing, malformed or has a value out of range."""


class SourceError(BadgeError):
    """A camera, video file or microphone could not be opened or stopped delivering."""


class EncoderError(BadgeError):
    """The video or audio encoder failed or was given frames it cannot encode."""


class RingError(BadgeError):
    """The pre-event ring on flash could not store, read or rebuild its segments."""


class StorageFullError(RingError):
    """The ring is full of pinned footage and cannot take another segment."""


class ControlError(BadgeError):
    """The local control socket could not be reached or answered with an error."""


class OutboxError(BadgeError):
    """The outbox database cannot be opened or written."""


class ReceiptStoreError(BadgeError):
    """The receipt database cannot be opened, read or written."""


class UplinkError(BadgeError):
    """The uplink cannot be set up as configured (bad CA, plain MQTT off loopback, ...)."""


class LinkDown(UplinkError):  # noqa: N818 - a state, not a failure of the caller
    """The broker connection is not up (or dropped) while sending; resend on the next one."""


class GaugeError(BadgeError):
    """The battery fuel gauge is absent, is not the chip configured, or did not answer."""


class EnrolmentError(BadgeError):
    """The badge could not enrol: no gateway, a refusal, or an answer that is not genuine."""
