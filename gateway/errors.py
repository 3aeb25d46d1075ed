"""The gateway's errors: one hierarchy, each saying what failed and where."""

from __future__ import annotations

import enum
from pathlib import Path


class GatewayError(Exception):
    """Base of every error the gateway raises."""


class StorageError(GatewayError):
    """The gateway database cannot be opened, read or written; the message says why."""


class DuplicateRecordError(StorageError):
    """A record is refused because one with the same key is stored already."""


class EnrolmentError(GatewayError):
    """A badge could not be enrolled, or its enrolment record is unusable."""


class BrokerConfigError(GatewayError):
    """The broker's accounts, settings or configuration files are invalid or cannot be written."""


class BrokerControlError(GatewayError):
    """The broker refused a dynamic security command, or did not answer it in time."""

    def __init__(self, message: str, *, plugin_error: str | None = None) -> None:
        super().__init__(message)
        self.plugin_error = plugin_error
        """The plugin's own error text, when it answered with one."""


class CertificateError(GatewayError):
    """A certificate or its key is missing, malformed, mismatched or too widely readable."""


class TimestampAuthorityError(GatewayError):
    """A time-stamping authority (ours or an external one) could not give a token that verifies."""


class VaultError(GatewayError):
    """The vault cannot store or find a sealed segment, or its bytes are not what was named."""


class QuarantineError(GatewayError):
    """Rejected bytes could not be kept in the quarantine directory."""


class IntakeError(GatewayError):
    """The intake cannot start or cannot reach its storage (not a rejection of a message)."""


class LedgerIntegrityError(GatewayError):
    """The stored ledger disagrees with its signed checkpoints; the message says what differs."""


class CustodyError(GatewayError):
    """A custody record is refused (no justification where one is required, an unknown action)."""


class MonitoringError(GatewayError):
    """The health and metrics listener cannot start (its address is taken, or not allowed)."""


class BackupError(GatewayError):
    """A backup cannot be taken, or a backup is refused for restore (damaged, older, foreign)."""


class Reason(enum.StrEnum):
    """Why the intake refused or set aside something a badge sent (docs/protocol.md)."""

    UNKNOWN_BADGE = "unknown-badge"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad-signature"
    BADGE_MISMATCH = "badge-mismatch"
    OVERSIZED = "oversized"
    UNEXPECTED_SEGMENT = "unexpected-segment"
    HASH_MISMATCH = "hash-mismatch"
    CHAIN_BREAK = "chain-break"
    CONFLICT = "conflict"
    INTERNAL_ERROR = "internal-error"
    """The gateway failed, not the badge: logged and quarantined, never sent to the badge."""
    CUT_OFF = "cut-off"
    """The badge is cut off for sending too many refused messages: metadata kept, no answer."""
    PARTIAL_TIMEOUT = "partial-timeout"
    """A partial segment saw no chunk for too long; the badge resends it, so nothing is sent."""


class RejectedMessageError(GatewayError):
    """A badge's message is refused; ``reason`` is one of the protocol's reason codes.

    ``subject`` and ``key`` say what was refused (``segment`` and the seq in decimal, an
    incident id, ...), ``detail`` is the one-sentence explanation sent to the badge, and
    ``evidence_path`` (when set) names a file on disk, such as a reassembled segment, to
    keep in quarantine instead of the message's own bytes.
    """

    def __init__(
        self,
        reason: Reason,
        detail: str,
        *,
        subject: str = "",
        key: str = "",
        evidence_path: Path | None = None,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.subject = subject
        self.key = key
        self.evidence_path = evidence_path

    def about(self, subject: str) -> RejectedMessageError:
        """This refusal, its subject set to ``subject`` unless it names one already."""
        self.subject = self.subject or subject
        return self


class GatewayConfigError(GatewayError):
    """The gateway configuration file cannot be read or holds a wrong key or value."""


class WebhookError(GatewayError):
    """A webhook's secret cannot be read or is unusable, or its settings are wrong."""


class PlaybackError(GatewayError):
    """An incident's segments cannot be decrypted or remuxed for playback in a browser."""


class ConsoleError(GatewayError):
    """The security console cannot start, or refuses an operation (a bad user, a bad request)."""


class SecondFactorSetupRequiredError(ConsoleError):
    """The session's user must set up a second factor before anything else."""


class ExportError(GatewayError):
    """An evidence package cannot be made (incident incomplete, vault altered, TSA down, ...)."""


class RetentionError(GatewayError):
    """Footage cannot be deleted under retention (held, not yet due, or already deleted)."""


class InvalidTextError(GatewayError):
    """A name or a reason is refused: unsafe characters, or too little to say anything."""
