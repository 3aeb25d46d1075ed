"""The data directory: the gateway stamps with its own TSA, or an external one when configured."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from evidence.hashing import sha256
from evidence.keys import HpkeSuite
from evidence.timestamp import verify_timestamp
from gateway.config import GatewayConfig
from gateway.datadir import GatewayDataDir
from gateway.pki.ca import EvidenceCA
from gateway.timestamping import TimeStampAuthority, TsaHttpServer


def test_own_tsa_by_default_and_an_external_one_over_http(tmp_path: Path) -> None:
    data_dir = GatewayDataDir(tmp_path / "gateway")
    data_dir.initialise("Test Hospital", HpkeSuite.X25519, None)
    digest = sha256(b"a checkpoint note")

    own = data_dir.configured_timestamper(GatewayConfig.from_mapping(data_dir.root, {}).timestamps)
    verify_timestamp(own.stamp(digest), digest, data_dir.evidence_ca().certificate)

    national = EvidenceCA.create("National PKI")
    key, certificate = national.issue_tsa_certificate("National TSA")
    (tmp_path / "pki.crt").write_bytes(national.certificate.public_bytes(Encoding.PEM))
    authority = TimeStampAuthority(key, certificate, national.certificate)
    with TsaHttpServer(authority, "127.0.0.1", 0) as server:
        settings = {"timestamps": {"tsa_url": server.url, "tsa_ca_file": str(tmp_path / "pki.crt")}}
        external = data_dir.configured_timestamper(
            GatewayConfig.from_mapping(data_dir.root, settings).timestamps
        )
        token = external.stamp(digest)
    info = verify_timestamp(token, digest, national.certificate)
    assert info.tsa_name is not None and "National TSA" in info.tsa_name
