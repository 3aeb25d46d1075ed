"""The console: search at 1 M segments, playback's first byte, a press reaching a browser.

One hospital is built in a temporary directory: a real incident (real H.264/AAC segments,
sealed, taken in by the real intake), then 1,000,000 segment rows and 50,000 incidents
written straight into the store. The console serves it over HTTP on 127.0.0.1, and:

- search: p99 of incident searches (every filter, and deep pages) against the 50 ms goal;
- playback: p99 time to the first MP4 byte against the first byte of a static file from the
  same server (the HTTP round trip);
- alert: p99 from a press reaching the intake to its event arriving on a live stream,
  against the alert path alone (intake to the live channel) measured in the same run; the
  console hears of the alert as ``gateway console`` does, by following the database.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import re
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from badge.capture import CaptureLoop, CaptureSettings
from badge.sources.audio import SyntheticMicrophone
from badge.sources.synthetic import SyntheticCamera
from bench.report import Figure
from demo.enrolment import enroll_badge
from evidence.bundle import EnrolmentBundle
from evidence.hashing import ZERO_DIGEST, sha256
from evidence.incident import IncidentRecord, Press, SignedIncident, sign_alert
from evidence.keys import HpkeSuite
from evidence.messages import SegmentChunk
from evidence.segment import SegmentFacts, seal_segment
from evidence.topics import badge_topic
from gateway.alerts.alerts import AlertEvent
from gateway.alerts.live import AlertChannel
from gateway.config import GatewayConfig
from gateway.console.live_feed import AlertFollower
from gateway.console.server import ConsoleServer
from gateway.console.users import Role, UserDirectory
from gateway.datadir import GatewayDataDir
from gateway.intake.intake import Intake
from gateway.storage.incident_index import IncidentIndex, IncidentQuery

SEGMENTS = 1_000_000
INCIDENTS = 50_000
BADGES = 200
SEARCHES = 400
PLAYS = 20
ALERTS = 100
PASSWORD = "bench-password-123"  # noqa: S105 - a throwaway user in a temporary store
SEARCH_GOAL_MS = 50.0
_NS = 1_000_000_000


def run() -> list[Figure]:
    """Build the store, serve it, and measure the three figures."""
    with tempfile.TemporaryDirectory(prefix="medbadge-bench-console-") as scratch:
        root = Path(scratch)
        data_dir = GatewayDataDir(root / "gateway")
        data_dir.initialise("Bench Hospital", HpkeSuite.X25519, None)
        bundle = root / "bundle"
        enroll_badge(data_dir, "bench-badge", bundle, wearer="Nurse Bench", location="ER")
        channel = AlertChannel()
        """The intake's own live channel (what ``gateway run`` publishes to)."""
        intake = Intake(data_dir, lambda _topic, _payload: None, channel.publish)
        try:
            _ingest_real_incident(intake, EnrolmentBundle.load(bundle))
            _fill(data_dir)
            storage = data_dir.storage()
            try:
                UserDirectory(storage.users).create(
                    "bench", PASSWORD, Role.OFFICER, created_by="bench"
                )
                index = storage.incident_index
                index.catch_up()
                search = _search_figure(index)
            finally:
                storage.close()
            port = _free_port()
            config = GatewayConfig.from_mapping(
                data_dir.root, {"console": {"tls": False, "host": "127.0.0.1", "port": port}}
            )
            console_channel = AlertChannel()
            follower_storage = data_dir.storage()
            follower = AlertFollower(
                follower_storage, console_channel, config.console.limits.live_poll_ms / 1000
            )
            follower.start()
            server = ConsoleServer(data_dir, config, console_channel)
            server.start()
            try:
                client = _Client(f"http://127.0.0.1:{port}")
                client.login("bench")
                playback = _playback_figure(client)
                alert = _alert_figure(client, intake, channel, EnrolmentBundle.load(bundle))
            finally:
                follower.stop()
                follower_storage.close()
                console_channel.close()
                channel.close()
                server.stop()
        finally:
            intake.close()
    return [search, playback, alert]


def _recording(seconds: float = 10.0) -> list[bytes]:
    camera = SyntheticCamera(640, 360, 30, "BENCH", realtime=False, max_frames=round(seconds * 30))
    found: list[bytes] = []
    loop = CaptureLoop(
        camera,
        SyntheticMicrophone(realtime=False),
        CaptureSettings(),
        lambda s: found.append(s.data),
    )
    loop.start()
    loop.wait(120)
    return found


def _ingest_real_incident(intake: Intake, bundle: EnrolmentBundle) -> None:
    """Alert, record and sealed segments of a real recording, through the real intake."""
    identity, badge = bundle.identity, bundle.identity.badge_id
    previous, base = ZERO_DIGEST, time.time_ns()
    segments = []
    for seq, plaintext in enumerate(_recording()):
        facts = SegmentFacts(
            seq,
            1,
            seq * 2 * _NS,
            (seq + 1) * 2 * _NS,
            base + seq * 2 * _NS,
            base + (seq + 1) * 2 * _NS,
            {"container": "mpegts", "video_codec": "h264"},
            previous,
        )
        sealed = seal_segment(plaintext, facts, identity, bundle.custodian_key)
        previous = sealed.header.digest()
        segments.append(sealed)
    press = Press(1, 0, base)
    record = IncidentRecord(
        badge, "real-1", (press,), 0, 0, 0, len(segments) - 1, "ER", 90, 10**9, base
    )
    intake.handle(badge_topic(badge, "alert"), sign_alert(identity, "real-1", press, "ER", 0))
    intake.handle(badge_topic(badge, "incident"), SignedIncident.sign(record, identity).to_bytes())
    for sealed in segments:
        data = sealed.to_bytes()
        step = 256 * 1024
        count = -(-len(data) // step)
        for index in range(count):
            chunk = SegmentChunk(
                badge,
                "real-1",
                sealed.header.seq,
                index,
                count,
                index * step,
                len(data),
                sha256(data),
                data[index * step : (index + 1) * step],
            )
            intake.handle(badge_topic(badge, "segment"), chunk.to_bytes())


def _fill(data_dir: GatewayDataDir) -> None:
    """1,000,000 segment rows and 50,000 alerts and incidents, written straight into the
    database file (as a bulk import would, bypassing the record stores for speed)."""
    connection = sqlite3.connect(data_dir.database_path, isolation_level=None)
    try:
        connection.execute("BEGIN")
        base = time.time_ns() - 400 * 86_400 * _NS
        connection.executemany(
            "INSERT INTO badges (badge_id, wearer, location, key_generation,"
            " broker_password_hash, enrolled_at_ns) VALUES (?, ?, ?, 1, 'x', ?)",
            [(f"b-{n:03d}", f"Wearer {n % 150}", "", base) for n in range(BADGES)],
        )
        per_badge = SEGMENTS // BADGES
        blob = bytes(200)
        connection.executemany(
            "INSERT INTO segments (badge_id, seq, incident_id, sealed_sha256, sealed_size,"
            " header, header_sha256, prev_sha256, boot, mono_start_ns, mono_end_ns,"
            " badge_wall_start_ns, badge_wall_end_ns, received_wall_ns)"
            " VALUES (?, ?, ?, ?, 1000000, ?, ?, ?, 1, 0, 0, 0, 0, ?)",
            (
                (
                    f"b-{n % BADGES:03d}",
                    n // BADGES,
                    f"i-{(n // BADGES) // 20}",
                    blob[:32],
                    blob,
                    blob[:32],
                    blob[:32],
                    base + n * _NS,
                )
                for n in range(per_badge * BADGES)
            ),
        )
        locations = ["Emergency", "Ward 3", "Ward 7", "Surgery", "Car park", "Reception"]
        connection.executemany(
            "INSERT INTO alerts (badge_id, incident_id, signed_alert, alert_sha256, press_boot,"
            " press_mono_ns, press_wall_ns, location, received_wall_ns, arrival)"
            " VALUES (?, ?, x'00', ?, 1, 0, ?, ?, ?, ?)",
            (
                (
                    f"b-{n % BADGES:03d}",
                    f"i-{n:06d}",
                    blob[:32],
                    base + n * 600 * _NS,
                    locations[n % len(locations)],
                    base + n * 600 * _NS,
                    1_000_000 + n,
                )
                for n in range(INCIDENTS)
            ),
        )
        connection.execute("COMMIT")
    finally:
        connection.close()


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def _search_figure(index: IncidentIndex) -> Figure:
    day = 86_400 * _NS
    base = time.time_ns() - 400 * day
    queries: list[Callable[[int], IncidentQuery]] = [
        lambda n: IncidentQuery(),
        lambda n: IncidentQuery(badge_id=f"b-{n % BADGES:03d}"),
        lambda n: IncidentQuery(wearer=f"Wearer {n % 150}"),
        lambda n: IncidentQuery(location="Car park", status="open"),
        lambda n: IncidentQuery(
            since_ns=base + (n % 300) * day, until_ns=base + (n % 300 + 7) * day
        ),
        lambda n: IncidentQuery(incident_prefix=f"i-0{n % 5}"),
        lambda n: IncidentQuery(location="Ward 3", badge_id=f"b-{n % BADGES:03d}"),
    ]
    times = []
    for number in range(SEARCHES):
        query = queries[number % len(queries)](number)
        start = time.perf_counter()
        page = index.search(query)
        if page.next_cursor is not None and number % 3 == 0:  # a few pages deeper
            for _ in range(5):
                if page.next_cursor is None:
                    break
                page = index.search(IncidentQuery(**{**query.__dict__, "after": page.next_cursor}))
        times.append((time.perf_counter() - start) * 1e3)
    value = _p99(times)
    return Figure(
        name="console-search",
        value=value,
        unit="ms",
        limit_value=SEARCH_GOAL_MS,
        ratio=value / SEARCH_GOAL_MS,
        goal="< 1 (p99 against 50 ms)",
        note=f"{SEARCHES} searches over {INCIDENTS} incidents and {SEGMENTS} segment rows; "
        f"median {statistics.median(times):.2f} ms",
    )


class _Client:
    """Cookies and the login form, as a browser does it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as answer:
            return str(answer.read().decode())

    def post(self, path: str, form: dict[str, str]) -> str:
        data = urllib.parse.urlencode(form).encode()
        with self.opener.open(self.base + path, data=data, timeout=30) as answer:
            return str(answer.read().decode())

    def login(self, username: str) -> None:
        token = _csrf(self.get("/login"))
        self.post("/login", {"csrf": token, "username": username, "password": PASSWORD})

    @property
    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    def first_byte_ms(self, path: str) -> float:
        host, port = self.base.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        start = time.perf_counter()
        connection.request("GET", path, headers={"Cookie": self.cookie})
        response = connection.getresponse()
        response.read(1)
        elapsed = (time.perf_counter() - start) * 1e3
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        connection.close()
        return elapsed


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    if found is None:
        raise RuntimeError("the page carries no CSRF token")
    return found.group(1)


def _playback_figure(client: _Client) -> Figure:
    incident = "/incidents/bench-badge/real-1"
    page = client.post(
        incident + "/view",
        {"csrf": _csrf(client.get(incident)), "justification": "benchmark playback"},
    )
    found = re.search(r'src="(/incidents/bench-badge/real-1/video/[^"]+)"', page)
    if found is None:
        raise RuntimeError("no player on the incident page after the justification")
    video = [client.first_byte_ms(found.group(1)) for _ in range(PLAYS)]
    static = [client.first_byte_ms("/static/console.css") for _ in range(PLAYS)]
    value, limit = _p99(video), _p99(static)
    return Figure(
        name="console-playback-first-byte",
        value=value,
        unit="ms",
        limit_value=limit,
        ratio=value / limit,
        goal="value < 300 ms",
        note="decrypt + remux of a 10 s 640x360 H.264/AAC incident; limit: a static file's "
        "first byte from the same server",
    )


def _alert_figure(
    client: _Client, intake: Intake, channel: AlertChannel, bundle: EnrolmentBundle
) -> Figure:
    host, port = client.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/alerts/stream", headers={"Cookie": client.cookie})
    stream = connection.getresponse()
    stream.readline()
    stream.readline()
    arrivals: dict[str, float] = {}
    done = threading.Event()

    def read() -> None:
        for line in _lines(stream):
            if line.startswith(b"data: "):
                found = re.search(rb'"incident":"([^"]+)"', line)
                if found:
                    arrivals[found.group(1).decode()] = time.perf_counter()
                    if len(arrivals) == ALERTS:
                        done.set()
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stored: dict[str, float] = {}

    def heard(event: AlertEvent) -> None:
        stored[event.incident_id] = time.perf_counter()

    subscription = channel.subscribe()
    identity, badge = bundle.identity, bundle.identity.badge_id
    sent: dict[str, float] = {}
    for number in range(ALERTS):
        incident = f"live-{number:04d}"
        payload = sign_alert(identity, incident, Press(2, number, time.time_ns()), "ER", 0)
        sent[incident] = time.perf_counter()
        intake.handle(badge_topic(badge, "alert"), payload)
        item = subscription.get(5)
        if isinstance(item, AlertEvent):
            heard(item)
        time.sleep(0.01)
    done.wait(30)
    subscription.close()
    connection.close()
    browser = [(arrivals[i] - sent[i]) * 1e3 for i in sent if i in arrivals]
    path = [(stored[i] - sent[i]) * 1e3 for i in sent if i in stored]
    value, limit = _p99(browser), _p99(path)
    return Figure(
        name="console-alert-latency",
        value=value,
        unit="ms",
        limit_value=limit,
        ratio=value / limit,
        goal="value < 1000 ms",
        note=f"{len(browser)} of {ALERTS} presses from intake to a live stream over HTTP; "
        "limit: intake to the live channel alone",
    )


def _lines(stream: http.client.HTTPResponse) -> Iterator[bytes]:
    while line := stream.readline():
        yield line


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
