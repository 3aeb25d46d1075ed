"""Badge public keys of the second algorithm, ECDSA P-256: raw form, PEM, r || s signatures."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from evidence.errors import KeyFileError, VerificationError
from evidence.keys import SigningKey, SigningPublicKey, signed_message


def p256_signature(key: ec.EllipticCurvePrivateKey, context: str, payload: bytes) -> bytes:
    r, s = decode_dss_signature(
        key.sign(signed_message(context, payload), ec.ECDSA(hashes.SHA256()))
    )
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_a_p256_key_round_trips_and_checks_r_s_signatures() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    key = SigningPublicKey(private.public_key())
    assert key.algorithm == "ecdsa-p256" and len(key.raw) == 65 and key.raw[0] == 4
    assert SigningPublicKey.from_raw(key.raw).raw == key.raw
    assert SigningPublicKey.from_pem(key.pem(), Path("k.pub")).raw == key.raw
    signature = p256_signature(private, "ctx", b"payload")
    key.verify(signature, "ctx", b"payload", "header")
    for wrong in (("ctx", b"other"), ("other", b"payload")):
        with pytest.raises(VerificationError, match="header: the signature does not verify"):
            key.verify(signature, wrong[0], wrong[1], "header")
    with pytest.raises(VerificationError):
        key.verify(signature[:63], "ctx", b"payload", "header")
    with pytest.raises(KeyFileError, match="P-256 key, where an Ed25519"):
        _ = key.ed25519_key


def test_other_curves_and_sizes_are_refused() -> None:
    with pytest.raises(KeyFileError, match="must be on P-256"):
        SigningPublicKey(ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(KeyFileError, match="32 bytes \\(Ed25519\\) or 65 \\(P-256\\), not 33"):
        SigningPublicKey.from_raw(bytes(33))
    with pytest.raises(KeyFileError, match="not a point on the curve"):
        SigningPublicKey.from_raw(b"\x04" + bytes(64))
    assert SigningKey.generate().public_key.algorithm == "ed25519"
