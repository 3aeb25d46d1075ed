"""The trust core's errors: one hierarchy, each saying what failed and where."""

from __future__ import annotations


class EvidenceError(Exception):
    """Base of every error the trust core raises."""


class EncodingError(EvidenceError):
    """Bytes are not the canonical encoding of a value, or a value cannot be encoded."""


class InvalidIdentifierError(EvidenceError):
    """An identifier (badge id, incident id) does not follow the allowed pattern."""


class KeyFileError(EvidenceError):
    """A key file is missing, unreadable, of the wrong kind, or too widely readable."""


class PassphraseError(KeyFileError):
    """A passphrase-protected key could not be unlocked with the passphrase given."""


class SegmentFormatError(EvidenceError):
    """A sealed segment file is truncated, empty, or not in the sealed-segment format."""


class VerificationError(EvidenceError):
    """A signature, hash or binding did not verify; the message says which and where."""


class DecryptionError(EvidenceError):
    """A sealed segment could not be opened with the custodian key given."""


class ChainError(VerificationError):
    """A run of sealed segments is not one continuous chain; ``findings`` says every break."""

    def __init__(self, message: str, findings: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.findings = findings


class LedgerError(EvidenceError):
    """A ledger operation asked for something impossible (an index or size out of range)."""


class TimestampError(VerificationError):
    """An RFC 3161 time-stamp token is malformed, refused or unverifiable; the message says why."""


class FormatError(EvidenceError):
    """Bytes decode, but not into the documented record (a ledger entry, a proof, a manifest)."""


class PackageError(EvidenceError):
    """An evidence package cannot be opened at all: missing, not a zip, not a directory."""


class EnrolmentProtocolError(EvidenceError):
    """An enrolment request or answer is malformed, unsigned, or does not prove its code."""
