"""Hospital initialisation and badge enrolment by one-time code, through the real commands."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import threading
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from badge.cli import main as badge_main
from badge.enrolment import enrol
from badge.errors import EnrolmentError as BadgeEnrolmentError
from demo.enrolment import LocalTransport
from evidence.bundle import EnrolmentBundle
from evidence.enrolment import EnrolmentRequest, fingerprint
from evidence.errors import EnrolmentProtocolError
from evidence.keys import BadgeIdentity, CustodianPrivateKey, HpkeSuite, Signer, SigningKey
from gateway.broker.config import hash_broker_password
from gateway.cli import main
from gateway.datadir import GatewayDataDir
from gateway.enrolment.enrolment import accept_request, issue_code
from gateway.enrolment.qr import code_uri, svg_qr
from gateway.enrolment.registry import EnrolmentView
from gateway.errors import EnrolmentError
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import open_ledger
from tests.enrol import enrol_by_cli, issue_by_cli
from tests.mosquitto import free_port


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def data_dir(tmp_path: Path) -> GatewayDataDir:
    assert main(["--data", str(tmp_path / "gw"), "init", "--hospital", "City Hospital 4"]) == 0
    return GatewayDataDir(tmp_path / "gw")


def test_init_creates_owner_only_keys_and_ca(data_dir: GatewayDataDir) -> None:
    for secret in (
        data_dir.signing_key_path,
        data_dir.custodian_key_path,
        data_dir.ca_dir / "ca.key",
    ):
        assert mode(secret) == 0o600, secret
    assert mode(data_dir.root) == 0o700
    assert data_dir.evidence_ca().hospital_name == "City Hospital 4"
    CustodianPrivateKey.load(data_dir.custodian_key_path)  # not passphrase-protected


def test_init_refuses_to_overwrite(
    data_dir: GatewayDataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    key_before = data_dir.signing_key_path.read_bytes()
    assert main(["--data", str(data_dir.root), "init", "--hospital", "Other"]) == 1
    assert "already initialised" in capsys.readouterr().err
    assert data_dir.signing_key_path.read_bytes() == key_before


def test_init_with_passphrase_and_hybrid_suite(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("a long custodian passphrase\n")
    root = tmp_path / "gw"
    args = [
        "--data",
        str(root),
        "init",
        "--hospital",
        "H",
        "--suite",
        "mlkem768-x25519",
        "--custodian-passphrase-file",
        str(secret),
    ]
    assert main(args) == 0
    key = CustodianPrivateKey.load(
        GatewayDataDir(root).custodian_key_path, b"a long custodian passphrase"
    )
    assert key.suite is HpkeSuite.MLKEM768_X25519


def custody_actions(data_dir: GatewayDataDir) -> list[tuple[str, str]]:
    storage = data_dir.storage()
    try:
        entries = CustodyLog(open_ledger(data_dir, storage)).entries()
        return [(entry.action, entry.subject) for entry in entries]
    finally:
        storage.close()


def enrolled_ids(data_dir: GatewayDataDir) -> list[str]:
    storage = data_dir.storage()
    try:
        return [badge.badge_id for badge in storage.badges.all()]
    finally:
        storage.close()


def test_enrolment_writes_a_bundle_whose_key_the_gateway_never_had(
    data_dir: GatewayDataDir, tmp_path: Path
) -> None:
    bundle_dir = tmp_path / "bundle"
    extra = ("--wearer", "Nurse Aigerim", "--location", "Emergency")
    assert enrol_by_cli(data_dir.root, "er-badge-01", bundle_dir, *extra) == 0
    assert mode(bundle_dir) == 0o700
    assert mode(bundle_dir / "badge.key") == 0o600
    assert mode(bundle_dir / "badge.json") == 0o600
    bundle = EnrolmentBundle.load(bundle_dir)
    assert bundle.identity.badge_id == "er-badge-01"
    assert bundle.key_origin.value == "badge-generated"
    assert bundle.hospital == "City Hospital 4"
    assert bundle.gateway_key.raw == data_dir.signing_key().public_key.raw
    assert bundle.custodian_key.pem() == data_dir.custodian_public_key().pem()
    assert bundle.evidence_ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert bundle.broker.username == "er-badge-01"
    assert len(bundle.broker.password) >= 32
    assert bundle.broker.password not in repr(bundle.broker)
    registered = data_dir.storage().badges.get("er-badge-01")
    assert registered.public_key.raw == bundle.identity.signing_key.public_key.raw
    assert registered.key_origin == "badge-generated"
    assert registered.wearer == "Nurse Aigerim"
    assert bundle.broker.password not in registered.broker_password_hash


def test_the_code_is_kept_only_as_a_digest(data_dir: GatewayDataDir) -> None:
    issued = issue_code(data_dir, "b1")
    stored = data_dir.database_path.read_bytes()
    for form in (issued.code, issued.code.replace("-", "")):
        assert form.encode() not in stored
    assert issued.code not in repr(issued)


def test_the_whole_exchange_through_both_commands_shows_one_fingerprint(
    data_dir: GatewayDataDir, tmp_path: Path
) -> None:
    """``gateway enroll`` serves until the badge's ``badge enroll`` has enrolled."""
    port = free_port()
    config = tmp_path / "badge.toml"
    config.write_text(f'[badge]\nbundle = "{tmp_path / "enrolment"}"\n')
    out = io.StringIO()
    statuses: list[int] = []
    gateway_args = ["--data", str(data_dir.root), "enroll", "ward-7", "--listen"]
    with redirect_stdout(out):
        serving = threading.Thread(
            target=lambda: statuses.append(main([*gateway_args, f"127.0.0.1:{port}"]))
        )
        serving.start()
        deadline = time.monotonic() + 10
        while "code for badge" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        code = re.search(r"code for badge ward-7: (\S+)", out.getvalue())
        assert code is not None
        badge_args = ["--config", str(config), "enroll", "--gateway", f"http://127.0.0.1:{port}"]
        assert badge_main([*badge_args, "--badge-id", "ward-7", "--code", code[1]]) == 0
        serving.join(10)
    assert statuses == [0]
    printed = re.findall(r"badge key fingerprint: ([0-9a-f ]+)", out.getvalue())
    key = EnrolmentBundle.load(tmp_path / "enrolment").identity.signing_key.public_key
    assert printed == [fingerprint(key), fingerprint(key)]
    assert len(printed[0].split()) == 16
    assert "\u2588\u2588\u2588\u2588" in out.getvalue()  # the code as a QR code, in blocks


def test_re_enrolment_needs_rotate_is_recorded_and_keeps_old_keys(
    data_dir: GatewayDataDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    badge = tmp_path / "badge"
    assert enrol_by_cli(data_dir.root, "b1", badge) == 0
    first = EnrolmentBundle.load(badge).identity.signing_key.public_key.raw
    assert issue_by_cli(data_dir.root, "b1") is None
    assert "already enrolled; use --rotate" in capsys.readouterr().err
    assert enrol_by_cli(data_dir.root, "b1", badge, "--rotate", "--operator", "admin-k") == 0
    rotated = EnrolmentBundle.load(badge)
    assert not (badge / "badge.key.next").exists()
    registry = data_dir.storage().badges
    assert [event.kind for event in registry.events("b1")] == ["enrolled", "rotated"]
    assert registry.events("b1")[1].operator == "admin-k"
    history = registry.key_history("b1")
    assert [generation for generation, _ in history] == [1, 2]
    second = rotated.identity.signing_key.public_key.raw
    assert first != second
    assert [key.raw for _, key in history] == [first, second]
    assert registry.get("b1").public_key.raw == second
    assert rotated.key_generation == 2


def test_the_badge_refuses_to_enrol_twice_without_rotate(
    data_dir: GatewayDataDir, tmp_path: Path
) -> None:
    assert enrol_by_cli(data_dir.root, "b1", tmp_path / "badge") == 0
    with pytest.raises(BadgeEnrolmentError, match=r"enrolled already.*--rotate"):
        enrol(tmp_path / "badge", "b1", "AAAA-BBBB-CCCC-DDDD", LocalTransport(data_dir))


@pytest.mark.parametrize("bad_id", ["Badge1", "x_y", "a/b", "a+b", "#", ""])
def test_bad_badge_ids_are_refused_clearly(
    data_dir: GatewayDataDir, bad_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data", str(data_dir.root), "enroll", bad_id, "--no-serve"]) == 1
    assert "is not allowed" in capsys.readouterr().err


def test_enroll_before_init_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data", str(tmp_path / "none"), "enroll", "b1", "--no-serve"]) == 1
    assert "run 'gateway init' first" in capsys.readouterr().err


def test_the_intake_view_sees_rotation_and_revocation_made_elsewhere(
    data_dir: GatewayDataDir, tmp_path: Path
) -> None:
    """The view remembers enrolments, yet a change committed on any connection shows at once."""
    assert enrol_by_cli(data_dir.root, "b1", tmp_path / "badge") == 0
    view = EnrolmentView(data_dir.storage().badges)
    first = view.get("b1")
    assert view.get("b1") is first  # remembered while nothing changed
    with pytest.raises(EnrolmentError, match="b2 is not enrolled"):
        view.get("b2")
    assert enrol_by_cli(data_dir.root, "b1", tmp_path / "badge", "--rotate") == 0
    rotated = view.get("b1")
    assert rotated.key_generation == 2
    assert rotated.public_key.raw == (
        EnrolmentBundle.load(tmp_path / "badge").identity.signing_key.public_key.raw
    )
    data_dir.storage().badges.revoke("b1", operator="admin", reason="lost")
    assert view.get("b1").revoked_at_ns is not None


# -- refusals: each says why, and nothing is enrolled ------------------------------------------


def csr_for(common_name: str, *, forged: bool = False) -> bytes:
    """A DER CSR for a fresh P-256 key naming ``common_name``; ``forged``: its signature is
    not the named key's (one bit of it changed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    if forged:
        der[-1] ^= 1  # the last byte of s: still well-formed, no longer the key's signature
    return bytes(der)


def request_for(
    transport: LocalTransport,
    badge_id: str,
    code: str,
    key: Signer | None = None,
    csr: bytes | None = None,
) -> bytes:
    return EnrolmentRequest.create(
        badge_id,
        key or SigningKey.generate(),
        code,
        transport.nonce(),
        tls_csr=csr or csr_for(badge_id),
    ).to_bytes()


def assert_nothing_enrolled(data_dir: GatewayDataDir, before: list[tuple[str, str]]) -> None:
    assert enrolled_ids(data_dir) == []
    assert custody_actions(data_dir) == before


def test_a_wrong_code_is_refused(data_dir: GatewayDataDir) -> None:
    issue_code(data_dir, "b1")
    transport = LocalTransport(data_dir)
    with pytest.raises(EnrolmentError, match="the enrolment code is wrong"):
        accept_request(
            data_dir, request_for(transport, "b1", "AAAA-BBBB-CCCC-DDDD"), transport.nonces
        )
    assert_nothing_enrolled(data_dir, [])


def test_an_expired_code_is_refused(data_dir: GatewayDataDir) -> None:
    issued = issue_code(data_dir, "b1", seconds=60)
    transport = LocalTransport(data_dir)
    with pytest.raises(EnrolmentError, match="has expired"):
        accept_request(
            data_dir,
            request_for(transport, "b1", issued.code),
            transport.nonces,
            now_ns=issued.expires_at_ns + 1,
        )
    assert_nothing_enrolled(data_dir, [])


def test_a_used_code_is_refused_the_second_time(data_dir: GatewayDataDir) -> None:
    issued = issue_code(data_dir, "b1")
    transport = LocalTransport(data_dir)
    accept_request(data_dir, request_for(transport, "b1", issued.code), transport.nonces)
    before = custody_actions(data_dir)
    key = data_dir.storage().badges.get("b1").public_key.raw
    with pytest.raises(EnrolmentError, match="used already"):
        accept_request(data_dir, request_for(transport, "b1", issued.code), transport.nonces)
    assert custody_actions(data_dir) == before == [("enrol", "b1")]
    assert data_dir.storage().badges.get("b1").public_key.raw == key


def test_a_code_for_another_badge_is_refused_and_spent(data_dir: GatewayDataDir) -> None:
    issued = issue_code(data_dir, "b1")
    transport = LocalTransport(data_dir)
    with pytest.raises(EnrolmentError, match="issued for badge b1, not for b2"):
        accept_request(data_dir, request_for(transport, "b2", issued.code), transport.nonces)
    with pytest.raises(EnrolmentError, match="used already"):
        accept_request(data_dir, request_for(transport, "b1", issued.code), transport.nonces)
    assert_nothing_enrolled(data_dir, [])


def test_a_request_signed_by_another_key_than_it_names_is_refused(
    data_dir: GatewayDataDir,
) -> None:
    """The key named must be the key that signs: possession is proven, not claimed."""
    issued = issue_code(data_dir, "b1")
    transport = LocalTransport(data_dir)
    named, signer = SigningKey.generate(), SigningKey.generate()
    honest = EnrolmentRequest.create(
        "b1", named, issued.code, transport.nonce(), tls_csr=csr_for("b1")
    )
    forged = EnrolmentRequest(
        honest.badge_id,
        honest.public_key,
        honest.key_origin,
        honest.nonce,
        honest.tls_csr,
        honest.code_proof,
        signer.sign("medbadge enrolment request v1", honest.body + honest.code_proof),
        honest.body,
    )
    with pytest.raises(EnrolmentProtocolError, match="not signed by the key it names"):
        accept_request(data_dir, forged.to_bytes(), transport.nonces)
    assert_nothing_enrolled(data_dir, [])
    accept_request(data_dir, honest.to_bytes(), transport.nonces)  # the code is still good
    assert data_dir.storage().badges.get("b1").public_key.raw == named.public_key.raw


def test_a_nonce_is_good_once(data_dir: GatewayDataDir) -> None:
    issued = issue_code(data_dir, "b1")
    transport = LocalTransport(data_dir)
    request = request_for(transport, "b1", issued.code)
    transport.nonces.take(EnrolmentRequest.from_bytes(request).nonce)
    with pytest.raises(EnrolmentError, match="nonce was not issued by this gateway or was used"):
        accept_request(data_dir, request, transport.nonces)
    assert_nothing_enrolled(data_dir, [])


def test_a_key_another_badge_has_is_refused(data_dir: GatewayDataDir, tmp_path: Path) -> None:
    assert enrol_by_cli(data_dir.root, "b1", tmp_path / "badge") == 0
    key = EnrolmentBundle.load(tmp_path / "badge").identity.signing_key
    issued = issue_code(data_dir, "b2")
    transport = LocalTransport(data_dir)
    with pytest.raises(EnrolmentError, match="enrolled already \\(for badge b1\\)"):
        accept_request(data_dir, request_for(transport, "b2", issued.code, key), transport.nonces)
    assert enrolled_ids(data_dir) == ["b1"]


def test_the_badge_refuses_an_answer_not_sealed_under_its_code(
    data_dir: GatewayDataDir, tmp_path: Path
) -> None:
    """Whoever answers without the code cannot give the badge a custodian key of its own."""

    class Impostor(LocalTransport):
        def submit(self, request: bytes) -> bytes:
            super().submit(request)
            return bytes(200)

    issued = issue_code(data_dir, "b1")
    with pytest.raises(BadgeEnrolmentError, match="does not open with this code"):
        enrol(tmp_path / "badge", "b1", issued.code, Impostor(data_dir))
    assert not (tmp_path / "badge" / "badge.json").exists()


def test_a_mistyped_code_is_refused_before_any_key_is_made(
    data_dir: GatewayDataDir, tmp_path: Path
) -> None:
    with pytest.raises(BadgeEnrolmentError, match="4 groups of 4 letters"):
        enrol(tmp_path / "badge", "b1", "ABCD-EFGH-1JKL", LocalTransport(data_dir))
    assert not (tmp_path / "badge").exists()


def test_a_legacy_bundle_still_loads_as_gateway_generated(
    data_dir: GatewayDataDir, tmp_path: Path
) -> None:
    """Bundles written by gateways that made the key (format v1) keep working."""
    assert enrol_by_cli(data_dir.root, "old-badge-01", tmp_path / "legacy") == 0
    manifest_path = tmp_path / "legacy" / "badge.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["key_origin"]
    manifest["format"] = "medbadge.enrolment.v1"
    manifest_path.write_text(json.dumps(manifest))
    bundle = EnrolmentBundle.load(tmp_path / "legacy")
    assert bundle.key_origin.value == "gateway-generated"
    assert bundle.identity.badge_id == "old-badge-01"


def test_the_qr_code_carries_the_code_and_the_badge(data_dir: GatewayDataDir) -> None:
    issued = issue_code(data_dir, "b1")
    assert code_uri(issued) == f"medbadge-enrol:{issued.code}?badge=b1"
    svg = svg_qr(issued)
    assert svg.startswith("<svg") and "<title>enrolment code</title>" in svg
    assert "<script" not in svg
    # a different code draws a different symbol
    assert svg_qr(issue_code(data_dir, "b2")) != svg


@pytest.mark.parametrize(
    ("csr", "reason"),
    [
        (lambda: csr_for("b2"), r"names \['b2'\], not 'b1'"),
        (
            lambda: csr_for("b1", forged=True),
            "not signed by the key it names",
        ),
        (lambda: b"not a certificate request", "not a DER PKCS#10 request"),
    ],
)
def test_a_certificate_request_for_another_name_or_key_is_refused(
    data_dir: GatewayDataDir, csr: Callable[[], bytes], reason: str
) -> None:
    issued = issue_code(data_dir, "b1")
    transport = LocalTransport(data_dir)
    request = request_for(transport, "b1", issued.code, csr=csr())
    with pytest.raises(EnrolmentError, match=reason):
        accept_request(data_dir, request, transport.nonces)
    assert_nothing_enrolled(data_dir, [])


def test_the_badge_gets_a_broker_certificate_for_its_own_tls_key(
    data_dir: GatewayDataDir, tmp_path: Path
) -> None:
    assert enrol_by_cli(data_dir.root, "ward-3", tmp_path / "badge") == 0
    bundle = EnrolmentBundle.load(tmp_path / "badge")
    assert bundle.client_certificate_pem is not None
    certificate = x509.load_pem_x509_certificate(bundle.client_certificate_pem)
    ca = data_dir.evidence_ca().certificate
    certificate.verify_directly_issued_by(ca)
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [name.value for name in names] == ["ward-3"]
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert mode(tmp_path / "badge" / "tls.key") == 0o600
    tls_key = serialization.load_pem_private_key(
        (tmp_path / "badge" / "tls.key").read_bytes(), password=None
    )
    assert tls_key.public_key() == certificate.public_key()
    storage = data_dir.storage()
    try:
        (entry,) = CustodyLog(open_ledger(data_dir, storage)).entries(subject="ward-3")
    finally:
        storage.close()
    digest = entry.detail["tls_certificate_sha256"]
    assert digest == hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()


@pytest.mark.parametrize("reserved", ["gateway", "gateway-intake", "intake-7"])
def test_ids_of_the_gateways_broker_accounts_are_refused(
    data_dir: GatewayDataDir, reserved: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (data_dir.root / "gateway.toml").write_text('[broker]\nusername = "intake-7"\n')
    assert main(["--data", str(data_dir.root), "enroll", reserved, "--no-serve"]) == 1
    assert f"badge id {reserved!r} is reserved for the gateway's own broker accounts" in (
        capsys.readouterr().err
    )
    assert enrolled_ids(data_dir) == []


def test_a_badge_enrolled_as_the_gateway_before_is_named_by_broker_config(
    data_dir: GatewayDataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = data_dir.storage()
    try:  # as an older gateway allowed
        key = BadgeIdentity.generate("gateway").signing_key.public_key
        storage.badges.enroll(
            "gateway",
            key,
            hash_broker_password("x"),
            wearer="",
            location="",
            operator="t",
            rotate=False,
            key_origin="gateway-generated",
        )
    finally:
        storage.close()
    assert main(["--data", str(data_dir.root), "broker-config", "--broker-user", "root"]) == 1
    assert "badge 'gateway' has the gateway's broker login name: revoke it" in (
        capsys.readouterr().err
    )
