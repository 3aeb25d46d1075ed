"""The signed envelope: canonical record bytes plus an Ed25519 signature under a purpose label.

Encoded as the canonical map ``{"record": <bytes>, "signature": <64 bytes>}``. Alerts,
heartbeats, incident records, receipts and rejections all travel this way.
"""

from __future__ import annotations

from dataclasses import dataclass

from evidence.canonical import CanonicalValue, decode_map, encode
from evidence.errors import EncodingError, SegmentFormatError
from evidence.keys import Signer, SigningPublicKey


@dataclass(frozen=True)
class Envelope:
    """Record bytes and the signature over them."""

    record_bytes: bytes
    signature: bytes

    @classmethod
    def sign(cls, record: dict[str, CanonicalValue], key: Signer, context: str) -> Envelope:
        """Encode ``record`` canonically and sign it under ``context``."""
        data = encode(record)
        return cls(data, key.sign(context, data))

    def to_bytes(self) -> bytes:
        """The envelope's canonical bytes."""
        return encode({"record": self.record_bytes, "signature": self.signature})

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Envelope:
        """Parse an envelope; raise SegmentFormatError naming ``where`` if it is not one."""
        try:
            fields = decode_map(data, where)
        except EncodingError as error:
            raise SegmentFormatError(f"{where}: not a signed record ({error})") from None
        record, signature = fields.get("record"), fields.get("signature")
        if set(fields) != {"record", "signature"} or not (
            isinstance(record, bytes) and isinstance(signature, bytes)
        ):
            raise SegmentFormatError(f"{where}: not a signed record (needs record and signature)")
        return cls(record, signature)

    def record(self, where: str) -> dict[str, CanonicalValue]:
        """The decoded record map."""
        try:
            return decode_map(self.record_bytes, where)
        except EncodingError as error:
            raise SegmentFormatError(f"{where}: record is not canonical ({error})") from None

    def verify(self, key: SigningPublicKey, context: str, what: str) -> None:
        """Raise VerificationError unless ``key`` signed the record under ``context``."""
        key.verify(self.signature, context, self.record_bytes, what)
