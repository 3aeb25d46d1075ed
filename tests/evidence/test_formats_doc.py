"""docs/formats.md stays true: its worked example is recomputed from the code and from cbor2."""

from __future__ import annotations

import re
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from evidence.hashing import sha256
from evidence.keys import HpkeSuite, SigningKey
from evidence.segment import SIGNATURE_CONTEXT, SegmentHeader

DOC = Path(__file__).resolve().parents[2] / "docs" / "formats.md"


@pytest.fixture(scope="module")
def blocks() -> dict[str, bytes]:
    found = re.findall(r"```hex (\S+)\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return {name: bytes.fromhex("".join(body.split())) for name, body in found}


def example_header() -> SegmentHeader:
    """The header the worked example describes in prose."""
    return SegmentHeader(
        badge_id="er-badge-01",
        seq=41,
        boot=3,
        mono_start_ns=82_000_000_000,
        mono_end_ns=84_000_000_000,
        wall_start_ns=1_795_000_000_000_000_000,
        wall_end_ns=1_795_000_002_000_000_000,
        codec={
            "container": "mpegts",
            "video_codec": "h264",
            "width": 1280,
            "height": 720,
            "fps_num": 30,
            "fps_den": 1,
        },
        plaintext_size=1000,
        plaintext_sha256=sha256(bytes(1000)),
        previous_header_sha256=sha256(b"previous header"),
        suite=HpkeSuite.X25519.value,
        dropped_frames=0,
        ciphertext_size=1048,
        ciphertext_sha256=sha256(b"ciphertext"),
    )


def test_header_bytes_match_the_code(blocks: dict[str, bytes]) -> None:
    header = example_header()
    assert blocks["header"] == header.encode()
    assert blocks["header-digest"] == header.digest()
    assert blocks["hpke-info"] == header.hpke_info()
    assert SegmentHeader.decode(blocks["header"], "doc") == header


def test_header_is_deterministic_cbor_for_an_independent_library(blocks: dict[str, bytes]) -> None:
    decoded = cbor2.loads(blocks["header"])
    assert decoded["seq"] == 41
    assert cbor2.dumps(decoded, canonical=True) == blocks["header"]


def test_signature_reproduces(blocks: dict[str, bytes]) -> None:
    key = SigningKey(ed25519.Ed25519PrivateKey.from_private_bytes(blocks["seed"]))
    assert blocks["public-key"] == key.public_key.raw
    assert blocks["signature"] == key.sign(SIGNATURE_CONTEXT, blocks["header"])
    key.public_key.verify(blocks["signature"], SIGNATURE_CONTEXT, blocks["header"], "doc example")
