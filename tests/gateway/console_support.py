"""Console test support: real recorded video sealed by a badge, a hospital with console users,
an in-process console on a free port following what a real intake stores (as the ``gateway
console`` process does), and a small cookie-keeping client."""

from __future__ import annotations

import http.client
import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from functools import cache, partial
from pathlib import Path

import pyotp

from badge.capture import CaptureLoop, CaptureSettings
from badge.media import EncodedSegment
from badge.sources.audio import SyntheticMicrophone
from badge.sources.synthetic import SyntheticCamera
from evidence.segment import SealedSegment, SegmentFacts, seal_segment
from gateway.alerts.live import AlertChannel
from gateway.config import GatewayConfig
from gateway.console.live_feed import AlertFollower
from gateway.console.second_factor import SecondFactor, SecretBox, second_factor_key_path
from gateway.console.server import ConsoleServer
from gateway.console.users import Role, UserDirectory
from gateway.intake.intake import Intake
from gateway.storage import Storage
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


SECRETS: dict[str, dict[str, str]] = {}
"""The TOTP secret of each user who has one, by the console's base URL."""
_LAST_STEP: dict[str, int] = {}


def one_time_code(secret: str) -> str:
    """The code of the earliest step not used yet with ``secret`` (waiting if it is ahead)."""
    step = max(int(time.time()) // 30, _LAST_STEP.get(secret, -1) + 1)
    while step > int(time.time()) // 30 + 1:
        time.sleep(0.2)
    _LAST_STEP[secret] = step
    return str(pyotp.TOTP(secret).generate_otp(step))


def add_users(hospital: Hospital, also_second_factor: tuple[str, ...] = ()) -> dict[str, str]:
    """Create USERS in the hospital's database; those whose role needs a second factor, and
    those named in ``also_second_factor``, get a TOTP secret set up, as they would at their
    first login. Returns the secrets."""
    storage = hospital.data_dir.storage()
    found: dict[str, str] = {}
    try:
        directory = UserDirectory(storage.users)
        factors = SecondFactor(
            storage.second_factors, SecretBox(second_factor_key_path(hospital.data_dir.keys))
        )
        for name, role in USERS.items():
            directory.create(name, PASSWORD, role, created_by="test")
            if factors.required(role) or name in also_second_factor:
                secret = factors.begin(name).secret
                step = int(time.time()) // 30 - 1  # the window's oldest: leaves two for logins
                factors.confirm(name, str(pyotp.TOTP(secret).generate_otp(step)))
                _LAST_STEP[secret] = step
                found[name] = secret
    finally:
        storage.close()
    return found


@dataclass
class ConsoleHarness:
    """A hospital, a real intake, and the console following its alerts and serving over HTTP."""

    hospital: Hospital
    channel: AlertChannel
    intake: Intake
    server: ConsoleServer
    follower: AlertFollower
    follower_storage: Storage
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
        self.follower.stop()
        self.follower_storage.close()
        self.channel.close()
        self.server.stop()
        self.intake.close()


@contextmanager
def running_console(
    root: Path, settings: dict[str, dict[str, object]] | None = None, toml: str = ""
) -> Iterator[ConsoleHarness]:
    """A hospital with USERS and badges badge-a and badge-b, its intake and its console;
    ``settings`` are more tables of ``gateway.toml``; ``toml`` is the file's text, read by
    the data directory (none: SQLite and the vault directory)."""
    hospital = make_hospital(root, config=toml)
    secrets = add_users(hospital)
    channel = AlertChannel()
    published: list[tuple[str, bytes]] = []
    intake = Intake(
        hospital.data_dir,
        lambda topic, payload: published.append((topic, payload)),
        lambda _event: None,  # the console hears of alerts from the database, not from here
    )
    config = GatewayConfig.from_mapping(
        hospital.data_dir.root,
        {
            "console": {"tls": False, "host": "127.0.0.1", "port": free_port(), "live_poll_ms": 5},
            **(settings or {}),
        },
    )
    follower_storage = hospital.data_dir.storage()
    follower = AlertFollower(follower_storage, channel, config.console.limits.live_poll_ms / 1000)
    follower.start()
    server = ConsoleServer(hospital.data_dir, config, channel)
    server.start()
    harness = ConsoleHarness(
        hospital, channel, intake, server, follower, follower_storage, published
    )
    SECRETS[harness.url] = secrets
    try:
        yield harness
    finally:
        del SECRETS[harness.url]
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


class _FromAddress(urllib.request.HTTPHandler):
    """Plain HTTP connections made from one local address."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self._source = source

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = partial(http.client.HTTPConnection, source_address=(self._source, 0))
        return self.do_open(connection, req)


class WebClient:
    """A cookie-keeping HTTP client that logs in through the login form, as a browser does."""

    def __init__(self, base_url: str, source: str | None = None) -> None:
        """A client of ``base_url``; ``source`` is a loopback address to connect from
        (127.0.0.2, ...), so that tests can be several client addresses at once."""
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.HTTPCookieProcessor(self.cookies),
            _NoRedirect(),
        ]
        if source is not None:
            handlers.append(_FromAddress(source))
        self._opener = urllib.request.build_opener(*handlers)

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

    def login(self, username: str, password: str = PASSWORD, code: str | None = None) -> Answer:
        """Fill in the login form (its CSRF token comes with it) and send it; the one-time
        code is the user's next one when the console set up a secret for them."""
        page = self.request("/login")
        token = csrf_of(page.text)
        if code is None:
            secret = SECRETS.get(self.base_url, {}).get(username)
            code = "" if secret is None else one_time_code(secret)
        form = {"csrf": token, "username": username, "password": password, "code": code}
        return self.request("/login", form)

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
