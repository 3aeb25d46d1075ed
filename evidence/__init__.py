"""The medbadge trust core: canonical encoding, keys, sealed segments, chains, verifier.

What a court, the badge and the gateway import by name is exported here; the modules
below hold the rest (``evidence.canonical``, ``evidence.package``, ``evidence.timestamp``
...). Nothing here needs more than ``cryptography`` and ``asn1crypto``.
"""

from __future__ import annotations

from evidence.chain import ChainReport, check_chain
from evidence.errors import (
    ChainError,
    DecryptionError,
    EncodingError,
    EvidenceError,
    FormatError,
    InvalidIdentifierError,
    KeyFileError,
    LedgerError,
    PackageError,
    PassphraseError,
    SegmentFormatError,
    TimestampError,
    VerificationError,
)
from evidence.incident import IncidentRecord, Press, SignedIncident
from evidence.keys import (
    BadgeIdentity,
    CustodianPrivateKey,
    CustodianPublicKey,
    HpkeSuite,
    SigningKey,
    SigningPublicKey,
)
from evidence.ledger.checkpoint import Checkpoint, NoteVerifier, open_note, parse_vkey
from evidence.ledger.merkle import verify_consistency, verify_inclusion
from evidence.messages import Receipt
from evidence.segment import SealedSegment, SegmentHeader
from evidence.timestamp import TimestampInfo, verify_timestamp
from evidence.verify import verify_package
from evidence.verify.report import VerificationReport

__all__ = [
    "BadgeIdentity",
    "ChainError",
    "ChainReport",
    "Checkpoint",
    "CustodianPrivateKey",
    "CustodianPublicKey",
    "DecryptionError",
    "EncodingError",
    "EvidenceError",
    "FormatError",
    "HpkeSuite",
    "IncidentRecord",
    "InvalidIdentifierError",
    "KeyFileError",
    "LedgerError",
    "NoteVerifier",
    "PackageError",
    "PassphraseError",
    "Press",
    "Receipt",
    "SealedSegment",
    "SegmentFormatError",
    "SegmentHeader",
    "SignedIncident",
    "SigningKey",
    "SigningPublicKey",
    "TimestampError",
    "TimestampInfo",
    "VerificationError",
    "VerificationReport",
    "check_chain",
    "open_note",
    "parse_vkey",
    "verify_consistency",
    "verify_inclusion",
    "verify_package",
    "verify_timestamp",
]
