"""RFC 3161 time-stamp tokens: reading them and verifying them offline against a trusted CA."""

from __future__ import annotations

from evidence.timestamp.token import TimestampInfo, TimestampResponse, TimestampToken
from evidence.timestamp.verify import verify_timestamp

__all__ = ["TimestampInfo", "TimestampResponse", "TimestampToken", "verify_timestamp"]
