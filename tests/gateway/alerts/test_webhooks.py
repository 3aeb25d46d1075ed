"""Alert webhooks over real HTTP: delivery, HMAC signature, retries, dead endpoints, no loss."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alerts.live import alert_document
from gateway.alerts.webhooks import (
    SIGNATURE_HEADER,
    AlertWebhooks,
    WebhookTarget,
    alert_body,
    sign_body,
    verify_signature,
)
from gateway.broker.config import SERVER_CERT_FILE, SERVER_KEY_FILE
from gateway.config import WebhookSettings
from gateway.errors import WebhookError
from gateway.pki.ca import EvidenceCA, write_certificate, write_private_key
from tests.gateway.alerts.test_live import event
from tests.gateway.webhook_receiver import WebhookReceiver, wait_until
from tests.mosquitto import free_port

SECRET = b"a shared webhook secret of 32 b."


def target(
    url: str, tmp_path: Path, *, secret: bytes = SECRET, **settings: object
) -> WebhookTarget:
    """A webhook to ``url`` whose secret file holds ``secret``."""
    secret_file = tmp_path / f"secret-{len(list(tmp_path.glob('secret-*')))}"
    secret_file.write_bytes(secret + b"\n")
    secret_file.chmod(0o600)
    options: dict[str, object] = {"retry_min_seconds": 0.05, "retry_max_seconds": 0.2, **settings}
    return WebhookTarget.load(WebhookSettings(url, secret_file, **options))  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def undelivered(tmp_path: Path) -> Path:
    return tmp_path / "webhooks" / "undelivered.jsonl"


def undelivered_lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_alert_is_posted_as_signed_json(
    receiver: WebhookReceiver, tmp_path: Path, undelivered: Path
) -> None:
    webhooks = AlertWebhooks([target(receiver.url, tmp_path)], undelivered)
    webhooks.start()
    try:
        webhooks.deliver(event(1, estimated=True))
        (post,) = receiver.wait_posts(1)
    finally:
        webhooks.stop()
    assert post.path == "/hooks/alert"
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.body) == alert_document(event(1, estimated=True))
    document = json.loads(post.body)
    assert (document["badge"], document["wearer"], document["location"], document["incident"]) == (
        "er-badge-01",
        "Nurse Aigerim",
        "Bay 3",
        "inc-0001",
    )
    assert document["received"]["wall_ns"] == event(1).received_wall_ns
    # any HMAC implementation checks it: SHA-256 over the exact body with the shared secret
    expected = "sha256=" + hmac.new(SECRET, post.body, hashlib.sha256).hexdigest()
    assert post.headers[SIGNATURE_HEADER.lower()] == expected
    assert verify_signature(SECRET, post.body, post.headers[SIGNATURE_HEADER.lower()])
    counts = webhooks.counts()[receiver.url]
    assert (counts.delivered, counts.failed_attempts, counts.undelivered) == (1, 0, 0)
    assert not undelivered.exists()


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        (b"another secret of enough bytes..", b"{}", None),
        (SECRET, b'{"tampered":1}', None),
        (SECRET, b"{}", ""),
        (SECRET, b"{}", "sha1=00"),
        (SECRET, b"{}", "sha256=zz\u00e9"),
    ],
)
def test_verify_signature_refuses(secret: bytes, body: bytes, header: str | None) -> None:
    signed = sign_body(SECRET, b"{}")
    assert verify_signature(SECRET, b"{}", signed)
    assert not verify_signature(secret, body, signed if header is None else header)
    assert not verify_signature(SECRET, b"{}", None)


def test_server_errors_are_retried_until_delivered(tmp_path: Path, undelivered: Path) -> None:
    with WebhookReceiver(statuses=[500, 503]) as receiver:
        webhooks = AlertWebhooks([target(receiver.url, tmp_path)], undelivered)
        webhooks.start()
        try:
            webhooks.deliver(event(2))
            posts = receiver.wait_posts(3)
            wait_until(lambda: webhooks.counts()[receiver.url].delivered == 1, "delivery")
        finally:
            webhooks.stop()
    assert [post.status for post in posts] == [500, 503, 200]
    assert len({post.body for post in posts}) == 1
    counts = webhooks.counts()[receiver.url]
    assert (counts.delivered, counts.failed_attempts, counts.undelivered) == (1, 2, 0)
    assert not undelivered.exists()


def test_a_hung_endpoint_holds_back_neither_the_caller_nor_other_webhooks(
    tmp_path: Path, undelivered: Path
) -> None:
    with WebhookReceiver() as hung, WebhookReceiver() as healthy:
        hung.hold.clear()
        webhooks = AlertWebhooks(
            [target(hung.url, tmp_path, timeout_seconds=30), target(healthy.url, tmp_path)],
            undelivered,
        )
        webhooks.start()
        try:
            webhooks.deliver(event(1))
            hung.wait_for(lambda: hung.waiting == 1, "held request")
            # the hung endpoint still holds the first POST while these are queued and sent
            webhooks.deliver(event(2))
            webhooks.deliver(event(3))
            posts = healthy.wait_posts(3)
            assert hung.waiting == 1 and hung.posts == []
            hung.hold.set()
            hung.wait_posts(3)
        finally:
            webhooks.stop()
    incidents = [json.loads(post.body)["incident"] for post in posts]
    assert incidents == ["inc-0001", "inc-0002", "inc-0003"]
    assert [json.loads(post.body)["incident"] for post in hung.posts] == incidents


def test_an_alert_nobody_accepts_is_kept_and_sent_again_at_the_next_start(
    tmp_path: Path, undelivered: Path
) -> None:
    with WebhookReceiver(statuses=[500] * 1000) as receiver:
        webhooks = AlertWebhooks([target(receiver.url, tmp_path, give_up_seconds=0.3)], undelivered)
        webhooks.start()
        webhooks.deliver(event(4))
        wait_until(lambda: webhooks.counts()[receiver.url].undelivered == 1, "give-up")
        webhooks.stop()
        (kept,) = undelivered_lines(undelivered)
        assert kept["url"] == receiver.url
        assert kept["body"] == alert_body(event(4)).decode()
        assert kept["why"] == "gave up"
        assert kept["last_error"] == "HTTP status 500"
        assert isinstance(kept["attempts"], int) and kept["attempts"] >= 1
        assert webhooks.counts()[receiver.url].failed_attempts >= 1

        receiver.statuses.clear()
        again = AlertWebhooks([target(receiver.url, tmp_path)], undelivered)
        again.start()
        try:
            wait_until(lambda: again.counts()[receiver.url].delivered == 1, "redelivery")
        finally:
            again.stop()
    assert receiver.posts[-1].status == 200
    assert receiver.posts[-1].body == alert_body(event(4))
    assert verify_signature(
        SECRET, receiver.posts[-1].body, receiver.posts[-1].headers[SIGNATURE_HEADER.lower()]
    )
    assert undelivered_lines(undelivered) == []


def test_undelivered_alerts_of_other_urls_are_left_alone(tmp_path: Path, undelivered: Path) -> None:
    undelivered.parent.mkdir()
    other = {"url": "http://127.0.0.1:9/elsewhere", "body": "{}", "why": "gave up"}
    undelivered.write_text(json.dumps(other) + "\nnot json at all\n")
    with WebhookReceiver() as receiver:
        webhooks = AlertWebhooks([target(receiver.url, tmp_path)], undelivered)
        webhooks.start()
        webhooks.stop()
    assert undelivered.read_text() == json.dumps(other) + "\nnot json at all\n"


def test_stop_records_what_could_not_be_sent(tmp_path: Path, undelivered: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    webhooks = AlertWebhooks(
        [target(dead, tmp_path, retry_min_seconds=60, retry_max_seconds=60)], undelivered
    )
    webhooks.start()
    webhooks.deliver(event(1))
    wait_until(lambda: webhooks.counts()[dead].failed_attempts == 1, "a failed attempt")
    webhooks.deliver(event(2))
    webhooks.stop(timeout=0.5)
    kept = undelivered_lines(undelivered)
    assert [json.loads(str(line["body"]))["incident"] for line in kept] == ["inc-0001", "inc-0002"]
    assert {line["why"] for line in kept} == {"shutdown"}
    assert "Connection refused" in str(kept[0]["last_error"])
    assert webhooks.counts()[dead].undelivered == 2


def test_a_full_queue_pushes_its_oldest_alerts_to_the_undelivered_file(
    tmp_path: Path, undelivered: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    webhooks = AlertWebhooks(
        [target(dead, tmp_path, queue_limit=2, retry_min_seconds=60, retry_max_seconds=60)],
        undelivered,
    )
    webhooks.start()
    try:
        for number in range(5):
            webhooks.deliver(event(number))
        wait_until(lambda: webhooks.counts()[dead].undelivered == 3, "three pushed out")
        kept = undelivered_lines(undelivered)
        assert [json.loads(str(line["body"]))["incident"] for line in kept] == [
            "inc-0000",
            "inc-0001",
            "inc-0002",
        ]
        assert {line["why"] for line in kept} == {"queue full"}
        assert webhooks.counts()[dead].queued == 2
    finally:
        webhooks.stop(timeout=0.1)
    assert len(undelivered_lines(undelivered)) == 5


def test_https_webhook_under_the_hospital_ca(tmp_path: Path, undelivered: Path) -> None:
    ca = EvidenceCA.create("Test Hospital")
    key, certificate = ca.issue_server_certificate([], ["127.0.0.1"])
    write_private_key(tmp_path / SERVER_KEY_FILE, key)
    write_certificate(tmp_path / SERVER_CERT_FILE, certificate)
    write_certificate(tmp_path / "ca.crt", ca.certificate)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / SERVER_CERT_FILE, tmp_path / SERVER_KEY_FILE)
    with WebhookReceiver(tls=context) as receiver:
        trusting = target(receiver.url, tmp_path, ca_file=tmp_path / "ca.crt")
        webhooks = AlertWebhooks([trusting], undelivered)
        webhooks.start()
        try:
            webhooks.deliver(event(5))
            (post,) = receiver.wait_posts(1)
        finally:
            webhooks.stop()
    assert json.loads(post.body)["incident"] == "inc-0005"


def test_https_webhook_with_an_untrusted_certificate_is_not_sent(
    tmp_path: Path, undelivered: Path
) -> None:
    ca = EvidenceCA.create("Test Hospital")
    key, certificate = ca.issue_server_certificate([], ["127.0.0.1"])
    write_private_key(tmp_path / SERVER_KEY_FILE, key)
    write_certificate(tmp_path / SERVER_CERT_FILE, certificate)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / SERVER_CERT_FILE, tmp_path / SERVER_KEY_FILE)
    with WebhookReceiver(tls=context) as receiver:
        webhooks = AlertWebhooks([target(receiver.url, tmp_path)], undelivered)  # system CAs
        webhooks.start()
        try:
            webhooks.deliver(event(6))
            wait_until(lambda: webhooks.counts()[receiver.url].failed_attempts >= 1, "a failure")
        finally:
            webhooks.stop(timeout=0.1)
        assert receiver.posts == []
    (kept,) = undelivered_lines(undelivered)
    assert "CERTIFICATE_VERIFY_FAILED" in str(kept["last_error"])


def test_secret_files_must_be_private_and_long_enough(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    settings = WebhookSettings("http://127.0.0.1:1/", secret_file)
    with pytest.raises(WebhookError, match="cannot read the secret"):
        WebhookTarget.load(settings)
    secret_file.write_bytes(SECRET)
    secret_file.chmod(0o644)
    with pytest.raises(WebhookError, match="chmod 600"):
        WebhookTarget.load(settings)
    secret_file.chmod(0o600)
    loaded = WebhookTarget.load(settings)
    assert loaded.secret == SECRET
    assert SECRET.decode() not in repr(loaded)
    secret_file.write_bytes(b"short\n")
    with pytest.raises(WebhookError, match="at least 16"):
        WebhookTarget.load(settings)


def test_no_webhooks_is_a_valid_configuration(undelivered: Path) -> None:
    webhooks = AlertWebhooks.from_settings([], undelivered)
    webhooks.start()
    webhooks.deliver(event(1))
    webhooks.stop()
    assert webhooks.counts() == {}
    assert not os.path.exists(undelivered)


def test_alerts_queued_before_start_are_not_lost_by_a_stop(
    tmp_path: Path, undelivered: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}/never-started"
    webhooks = AlertWebhooks([target(url, tmp_path)], undelivered)
    webhooks.deliver(event(9))
    webhooks.stop()
    (kept,) = undelivered_lines(undelivered)
    assert (kept["url"], kept["why"]) == (url, "shutdown")
    assert kept["body"] == alert_body(event(9)).decode()
