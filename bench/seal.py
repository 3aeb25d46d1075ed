"""Sealing throughput against the raw cost of its primitives: SHA-256 twice plus the AEAD."""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bench.report import Figure, median_seconds
from evidence.hashing import ZERO_DIGEST
from evidence.keys import BadgeIdentity, CustodianPrivateKey
from evidence.segment import SegmentFacts, seal_segment

SEGMENT_BYTES = 1_000_000
"""About 2 s of 1080p30 H.264 at 4 Mbit/s."""
SEGMENT_SECONDS = 2.0
SEGMENTS = 20
ROUNDS = 15


def run() -> list[Figure]:
    """Seal ``SEGMENTS`` segments per round and time the bare primitives on the same bytes."""
    identity = BadgeIdentity.generate("bench-badge")
    custodian = CustodianPrivateKey.generate().public_key
    segments = [os.urandom(SEGMENT_BYTES) for _ in range(SEGMENTS)]
    facts = SegmentFacts(0, 1, 0, 2 * 10**9, 0, 2 * 10**9, {"container": "mpegts"}, ZERO_DIGEST)
    aead = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())
    nonce = os.urandom(12)

    def seal_all() -> None:
        for plaintext in segments:
            seal_segment(plaintext, facts, identity, custodian)

    def primitives_all() -> None:
        for plaintext in segments:
            hashlib.sha256(plaintext).digest()
            ciphertext = aead.encrypt(nonce, plaintext, None)
            hashlib.sha256(ciphertext).digest()

    seal_all()  # warm caches
    seal_seconds = primitives_seconds = 0.0
    for _ in range(ROUNDS):  # interleaved so both see the same machine state
        seal_seconds += median_seconds(seal_all, 1)
        primitives_seconds += median_seconds(primitives_all, 1)
    megabytes = SEGMENT_BYTES * SEGMENTS * ROUNDS / 1e6
    seal_rate = megabytes / seal_seconds
    limit_rate = megabytes / primitives_seconds
    cpu_per_video_second = seal_seconds / (SEGMENTS * ROUNDS * SEGMENT_SECONDS)
    return [
        Figure(
            name="seal",
            value=seal_rate,
            unit="MB/s",
            limit_value=limit_rate,
            ratio=seal_seconds / primitives_seconds,
            goal="<= 1.25 (seal time / primitives time)",
            note=f"{cpu_per_video_second * 1e3:.2f} ms CPU per video second at 1080p30",
        )
    ]
