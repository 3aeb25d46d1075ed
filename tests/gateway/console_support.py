"""Console test support: real recorded video sealed by a badge, a hospital with console users,
an in-process console on a free port fed by a real intake, and a small cookie-keeping client."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from functools import cache
from pathlib import Path

from badge.capture import CaptureLoop, CaptureSettings
from badge.media import EncodedSegment
from badge.sources.audio import SyntheticMicrophone
from badge.sources.synthetic import SyntheticCamera
from evidence.segment import SealedSegment, SegmentFacts, seal_segment
from gateway.alerts.live import AlertChannel
from gateway.config import GatewayConfig
from gateway.console.server import ConsoleServer
from gateway.console.users import Role, UserDirectory
from gateway.intake.intake import Intake
from tests.gateway.badge_messages import BOOT_MONO_NS, BadgeMessages, Hospital, make_hospital
from tests.mosquitto import free_port
from tests.storage_backends import TestDatabase

PASSWORD = "correct horse battery staple"  # noqa: S105 - the test users' password
USERS = {
    "olga": Role.OFFICER,
    "carl": Role.CUSTODIAN,
    "aida": Role.AUDITOR,
    "adam": Role.ADMIN,
}
"""One console user per role, all with PASSWORD."""


@cache
def recorded_segments(seconds: float = 6.0) -> tuple[EncodedSegment, ...]:
    """Real 320x240 H.264 + AAC MPEG-TS segments from the badge's own capture pipeline."""
    camera = SyntheticCamera(320, 240, 30, "T-1", realtime=False, max_frames=round(seconds * 30))
    found: list[EncodedSegment] = []
    loop = CaptureLoop(camera, SyntheticMicrophone(realtime=False), CaptureSettings(), found.append)
    loop.start()
    assert loop.wait(60), "the capture loop did not finish"
    return tuple(found)


def seal_recording(
    badge: BadgeMessages, recording: tuple[EncodedSegment, ...]
) -> list[SealedSegment]:
    """Seal ``recording`` as the next segments of ``badge``'s chain."""
    sealed = []
    for encoded in recording:
        seq = badge.next_seq
        mono = BOOT_MONO_NS + seq * 2_000_000_000
        duration = encoded.mono_end_ns - encoded.mono_start_ns
        facts = SegmentFacts(
            seq=seq,
            boot=badge.boot,
            mono_start_ns=mono,
            mono_end_ns=mono + duration,
            wall_start_ns=encoded.wall_start_ns,
            wall_end_ns=encoded.wall_end_ns,
            codec=encoded.codec.as_header_fields(),
            previous_header_sha256=badge.previous,
        )
        segment = seal_segment(encoded.data, facts, badge.identity, badge.custodian)
        badge.previous = segment.header.digest()
        badge.sealed[seq] = segment
        badge.next_seq += 1
        sealed.append(segment)
    return sealed


def incident_messages(
    badge: BadgeMessages, incident_id: str, segments: list[SealedSegment]
) -> list[tuple[str, bytes]]:
    """What a badge sends for one incident: the alert first, the record, then the segments."""
    first, last = segments[0].header.seq, segments[-1].header.seq
    messages = [
        (badge.topic("alert"), badge.alert(incident_id, first)),
        (badge.topic("incident"), badge.incident(incident_id, first, last)),
    ]
    for segment in segments:
        messages += [
            (badge.topic("segment"), chunk)
            for chunk in badge.chunks(segment, incident_id, chunk_bytes=64 * 1024)
        ]
    return messages


def add_users(hospital: Hospital) -> None:
    """Create USERS in the hospital's database."""
    storage = hospital.data_dir.storage()
    try:
        directory = UserDirectory(storage.users)
        for name, role in USERS.items():
            directory.create(name, PASSWORD, role, created_by="test")
    finally:
        storage.close()


@dataclass
class ConsoleHarness:
    """A hospital, a real intake feeding a live channel, and the console serving both over HTTP."""

    hospital: Hospital
    channel: AlertChannel
    intake: Intake
    server: ConsoleServer
    published: list[tuple[str, bytes]] = field(default_factory=list)
    database: TestDatabase | None = None
    """The hospital's database, read directly by tests that check rows."""

    @property
    def url(self) -> str:
        """The console's base URL (plain HTTP on loopback)."""
        return self.server.url.rstrip("/")

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        """Hand badge messages to the intake, as the broker would."""
        for topic, payload in messages:
            self.intake.handle(topic, payload)

    def close(self) -> None:
        """Stop serving and close the intake."""
        self.channel.close()
        self.server.stop()
        self.intake.close()


@contextmanager
def running_console(root: Path, toml: str = "") -> Iterator[ConsoleHarness]:
    """A hospital with USERS and badges badge-a and badge-b, its intake and its console;
    ``toml`` is its gateway.toml (none: SQLite and the vault directory)."""
    hospital = make_hospital(root, config=toml)
    add_users(hospital)
    channel = AlertChannel()
    published: list[tuple[str, bytes]] = []
    intake = Intake(
        hospital.data_dir,
        lambda topic, payload: published.append((topic, payload)),
        channel.publish,
    )
    config = GatewayConfig.from_mapping(
        hospital.data_dir.root,
        {"console": {"tls": False, "host": "127.0.0.1", "port": free_port()}},
    )
    server = ConsoleServer(hospital.data_dir, config, channel)
    server.start()
    harness = ConsoleHarness(hospital, channel, intake, server, published)
    try:
        yield harness
    finally:
        harness.close()


@dataclass(frozen=True)
class Answer:
    """An HTTP response as the client saw it (redirects are not followed)."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", "replace")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


class WebClient:
    """A cookie-keeping HTTP client that logs in through the login form, as a browser does."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )

    def request(
        self, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        """GET ``path``, or POST ``form`` URL-encoded to it."""
        data = None if form is None else urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(  # noqa: S310 - an http://127.0.0.1 URL
            self.base_url + path, data=data, headers=headers or {}
        )
        try:
            with self._opener.open(request, timeout=30) as response:
                return Answer(response.status, _headers(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, _headers(error.headers), error.read())

    def login(self, username: str, password: str = PASSWORD) -> Answer:
        """Fill in the login form (its CSRF token comes with it) and send it."""
        page = self.request("/login")
        token = csrf_of(page.text)
        return self.request("/login", {"csrf": token, "username": username, "password": password})

    def csrf(self, path: str) -> str:
        """The CSRF token on the page at ``path``."""
        return csrf_of(self.request(path).text)


def _headers(message: Message) -> dict[str, str]:
    """Header names in lower case; repeated headers (Set-Cookie) joined by newlines."""
    found: dict[str, str] = {}
    for name, value in message.items():
        key = name.lower()
        found[key] = f"{found[key]}\n{value}" if key in found else value
    return found


def csrf_of(page: str) -> str:
    """The CSRF token a page carries (hidden field or meta tag)."""
    found = re.search(r'name="csrf" value="([^"]+)"', page) or re.search(
        r'name="csrf-token" content="([^"]+)"', page
    )
    assert found is not None, page[:500]
    return found.group(1)
