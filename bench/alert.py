"""Alert latency, press to the gateway's live channel, with 200 badges connected.

Three processes besides the broker (the demo's mosquitto, TLS on loopback):

* this one runs the gateway daemon in-process (``GatewayDaemon``: intake, database, ledger,
  live channel, exactly what ``gateway run`` runs) and listens on its ``AlertChannel``, the
  feed the console's alert screen reads;
* a badge process (``python -m bench.alert badge ...``) with the badge's own incident
  recorder, outbox, ring and uplink: a press is ``IncidentRecorder.press`` (the signed alert
  into the durable outbox, the pre-roll pinned) and the uplink's wake, which publishes it;
  between presses the incident is closed (one small segment) and uploaded, so every press
  opens a new incident and sends a new alert; the next press comes at a random moment up
  to 0.2 s later;
* a fleet process (``python -m bench.fleet``) holding the other 199 badges' connections,
  each heartbeating every 10 s (the default).

With ``under_attack`` (``python -m bench alert --under-attack``) ``gateway console`` runs
too, with a security officer, and an attack process (``python -m bench.attack``) runs every
attack on the gateway at once while the badge presses: the second badge floods its own topics
with garbage until it is cut off (or 10 s pass), 2,000 idle sockets and a slow-header client
hold the console's port, and wrong passwords for the officer come from four addresses. The
fleet then holds the other 198 badges, so 200 are still connected.

Press and channel event are read from the same CLOCK_MONOTONIC in two processes. The limit
is the loopback round trip through the same broker in the same run: a QoS 1 publish of an
alert-sized payload to a subscriber in another process (see ``bench.loopback``),
interleaved with the presses.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from badge.heartbeat import read_heartbeat
from badge.incident import IncidentRecorder
from badge.outbox import Outbox
from badge.receipts import ReceiptStore
from badge.ring import Ring
from badge.uplink import Uplink
from bench.loopback import BenchHospital, RawTransfer
from bench.report import Figure
from demo.run import DEMO_OFFICER, add_demo_officer
from evidence.bundle import EnrolmentBundle
from evidence.incident import Press, sign_alert
from evidence.messages import Heartbeat
from evidence.segment import SegmentFacts, seal_segment
from gateway.alerts.alerts import AlertEvent
from gateway.alerts.live import Subscription
from gateway.config import GatewayConfig
from gateway.daemon import GatewayDaemon

BADGES = 200
PRESSES = 200
HEARTBEAT_S = 10.0
PAUSE_S = 0.2
"""Presses come at a random moment, up to this long after the last one's upload finished."""
WAIT_S = 30.0
_STEP_NS = 1_000_000
_pause = random.Random()


class ChannelWatch:
    """Notes the monotonic time each alert reaches the gateway's live channel."""

    def __init__(self, subscription: Subscription) -> None:
        """Read ``subscription`` in a thread until it closes."""
        self._subscription = subscription
        self._changed = threading.Condition()
        self.arrived: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="channel-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._subscription.closed:
            item = self._subscription.get(0.5)
            if isinstance(item, AlertEvent):
                now = time.monotonic_ns()
                with self._changed:
                    self.arrived[item.incident_id] = now
                    self._changed.notify_all()

    def wait(self, incident_id: str) -> int:
        """The monotonic ns the alert of ``incident_id`` reached the channel."""
        with self._changed:
            if not self._changed.wait_for(lambda: incident_id in self.arrived, WAIT_S):
                raise RuntimeError(f"the alert of incident {incident_id} never reached the channel")
            return self.arrived[incident_id]


class BadgeProcess:
    """The pressing badge, in its own process, driven over its standard input and output."""

    def __init__(self, bundle_dir: Path, data_dir: Path, module: str = "bench.alert") -> None:
        """Start it (``python -m MODULE badge ...``) and wait until its uplink is connected."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", module, "badge", str(bundle_dir), str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._process.stdin is None or self._process.stdout is None:
            raise RuntimeError("the badge process has no pipes")
        self._to, self._from = self._process.stdin, self._process.stdout
        self._expect("ready")

    def _ask(self, command: str) -> str:
        self._to.write(command + "\n")
        self._to.flush()
        answer = self._from.readline().strip()
        if not answer:
            raise RuntimeError(f"the badge process ended on {command!r}")
        return answer

    def _expect(self, word: str) -> None:
        answer = self._from.readline().strip()
        if answer != word:
            raise RuntimeError(f"the badge process said {answer!r}, not {word!r}")

    def press(self) -> tuple[str, int]:
        """Press; return the incident and the monotonic ns of the press."""
        incident, pressed = self._ask("press").split()
        return incident, int(pressed)

    def close_incident(self) -> None:
        """Record the post-roll's segment and wait until the incident is receipted."""
        if self._ask("close") != "closed":
            raise RuntimeError("the badge process did not close its incident")

    def stop(self) -> None:
        """End the process."""
        self._to.close()
        try:
            self._process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(WAIT_S)


def _percentiles(samples_ms: Sequence[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return cuts[49], cuts[98]


def run(
    presses: int = PRESSES, badges: int = BADGES, *, under_attack: bool = False
) -> list[Figure]:
    """Press ``presses`` times with ``badges`` connected; probe the loopback between presses.

    ``under_attack``: the console runs, and the attacks of ``bench.attack`` with it."""
    alert_ms: list[float] = []
    attacked = ""
    loopback_ms: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="medbadge-bench-alert-") as temporary,
        contextlib.ExitStack() as running,
    ):
        root = Path(temporary)
        hospital = BenchHospital(root, badges)
        running.callback(hospital.stop)
        hospital.set_up_hospital()
        hospital.configure_broker()
        hospital.start_broker()
        watch = _start_gateway(hospital, running)
        fleet_ids = hospital.badge_ids[2:] if under_attack else hospital.badge_ids[1:]
        start_fleet(hospital, running, fleet_ids)
        pressing = hospital.badge_ids[0]
        badge = BadgeProcess(hospital.bundle_dir(pressing), root / "pressing-badge")
        running.callback(badge.stop)
        raw = RawTransfer(hospital)
        running.callback(raw.close)
        attacks = None
        if under_attack:
            add_demo_officer(hospital.gateway_data)
            hospital.start_console()
            attacks = AttackProcess(hospital, hospital.badge_ids[1], running)
        probe = os.urandom(_alert_size(EnrolmentBundle.load(hospital.bundle_dir(pressing))))
        for number in range(presses + 1):
            incident, pressed = badge.press()
            arrived = watch.wait(incident)
            badge.close_incident()
            round_trip = raw.round_trip(probe)
            time.sleep(_pause.uniform(0, PAUSE_S))
            if number == 0:
                continue  # warm-up
            alert_ms.append((arrived - pressed) / 1e6)
            loopback_ms.append(round_trip * 1e3)
        if attacks is not None:
            attacked = f"; under attack: {attacks.finish()}"
    note = (
        f"{presses} presses, {badges} badges connected ({len(fleet_ids)} of them heartbeating "
        f"every {HEARTBEAT_S:g} s in another process){attacked}"
    )
    goal = "p99 < 50 ms (ratio: press to console event / loopback round trip)"
    figures = []
    prefix = "alert-under-attack" if under_attack else "alert"
    names = (f"{prefix}-p50", f"{prefix}-p99")
    for name, alert, loopback in zip(
        names, _percentiles(alert_ms), _percentiles(loopback_ms), strict=True
    ):
        figures.append(Figure(name, alert, "ms", loopback, alert / loopback, goal, note))
    return figures


def _start_gateway(hospital: BenchHospital, running: contextlib.ExitStack) -> ChannelWatch:
    """The gateway daemon in this process (its log to a file), watched on its live channel."""
    log_file = logging.FileHandler(hospital.root / "gateway.log")
    gateway_log = logging.getLogger("gateway")
    gateway_log.addHandler(log_file)
    running.callback(log_file.close)
    running.callback(gateway_log.removeHandler, log_file)
    daemon = GatewayDaemon(hospital.data_dir, GatewayConfig.load(hospital.gateway_data))
    watch = ChannelWatch(daemon.channel.subscribe())
    daemon.start()
    running.callback(daemon.stop)
    _wait_for(lambda: daemon.connected, "the gateway")
    return watch


class AttackProcess:
    """``python -m bench.attack`` against the hospital's broker and console."""

    def __init__(
        self, hospital: BenchHospital, flooder: str, running: contextlib.ExitStack
    ) -> None:
        """Start it with ``flooder``'s bundle; wait until every attack is under way."""
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.attack",
                str(hospital.bundle_dir(flooder)),
                str(hospital.console_port),
                DEMO_OFFICER,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        running.callback(self._end)
        if self._process.stdout is None or self._process.stdout.readline().strip() != "attacking":
            raise RuntimeError("the attacks did not start")
        self._counts = ""

    def finish(self) -> str:
        """End the attacks; what they did, as one line of JSON."""
        self._counts = self._end()
        return self._counts

    def _end(self) -> str:
        if self._process.returncode is not None:
            return self._counts
        output, _ = self._process.communicate(timeout=WAIT_S)
        return output.strip()


def start_fleet(
    hospital: BenchHospital,
    running: contextlib.ExitStack,
    badge_ids: Sequence[str] | None = None,
) -> None:
    """``badge_ids`` (every badge but the first by default) connected and heartbeating from
    another process."""
    if badge_ids is None:
        badge_ids = hospital.badge_ids[1:]
    fleet = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.fleet",
            "--heartbeat-seconds",
            str(HEARTBEAT_S),
            *(str(hospital.bundle_dir(badge_id)) for badge_id in badge_ids),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    running.callback(fleet.communicate, timeout=WAIT_S)  # closing its input ends it
    if fleet.stdout is None or fleet.stdout.readline().strip() != "connected":
        raise RuntimeError("the fleet of badges did not connect")


def _wait_for(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {WAIT_S} s")
        time.sleep(0.02)


def _alert_size(bundle: EnrolmentBundle) -> int:
    """The size of a signed alert of this badge (what the loopback probe carries)."""
    press = Press(1, time.monotonic_ns(), time.time_ns())
    return len(sign_alert(bundle.identity, "20260101t000000-000000", press, "bench", 0))


# ------------------------------------------------------------------ the badge process


def _receipted(receipts: ReceiptStore, incident_id: str) -> Callable[[], bool]:
    """A check that the receipt of ``incident_id`` is kept."""
    return lambda: receipts.get("incident", incident_id) is not None


@dataclass
class PressingBadge:
    """A badge's ring, outbox, receipts, uplink and incident recorder, as the daemon wires
    them, for a benchmark's pressing badge in a process of its own."""

    bundle: EnrolmentBundle
    ring: Ring
    outbox: Outbox
    receipts: ReceiptStore
    uplink: Uplink
    recorder: IncidentRecorder

    @classmethod
    def start(
        cls,
        bundle_dir: Path,
        data_dir: Path,
        *,
        ring_pre_roll_ns: int,
        pre_roll_ns: int,
        post_roll_ns: int,
    ) -> PressingBadge:
        """Open its stores in ``data_dir``, connect, and say ``ready`` on stdout.

        ``ring_pre_roll_ns`` is how much unpinned footage the ring keeps; ``pre_roll_ns``
        and ``post_roll_ns`` are the incident's.
        """
        bundle = EnrolmentBundle.load(bundle_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        ring = Ring.open(data_dir / "ring", pre_roll_ns=ring_pre_roll_ns, max_bytes=10**9)
        outbox = Outbox(data_dir / "outbox.db")
        receipts = ReceiptStore(data_dir / "receipts.db")

        def heartbeat() -> Heartbeat:
            return read_heartbeat(bundle.identity.badge_id, ring, outbox)

        uplink = Uplink(
            bundle.identity, bundle, ring, outbox, receipts=receipts, tls=True, heartbeat=heartbeat
        )
        recorder = IncidentRecorder(
            data_dir / "incidents",
            ring,
            bundle.identity,
            outbox,
            pre_roll_ns=pre_roll_ns,
            post_roll_ns=post_roll_ns,
            location="bench",
            on_change=lambda recording: None if recording else uplink.wake(),
        )
        uplink.start()
        _wait_for(lambda: uplink.connected, "the badge's uplink connecting")
        print("ready", flush=True)
        return cls(bundle, ring, outbox, receipts, uplink, recorder)

    def stop(self) -> None:
        """Disconnect and close its stores."""
        self.uplink.stop()
        self.outbox.close()
        self.receipts.close()


def _badge(bundle_dir: Path, data_dir: Path) -> int:
    """The pressing badge: answer ``press`` and ``close`` on stdin until it closes."""
    badge = PressingBadge.start(
        bundle_dir, data_dir, ring_pre_roll_ns=0, pre_roll_ns=0, post_roll_ns=0
    )
    bundle, ring, receipts, recorder = badge.bundle, badge.ring, badge.receipts, badge.recorder
    incident = ""
    for line in sys.stdin:
        if line.strip() == "press":
            pressed = time.monotonic_ns()
            incident = recorder.press().incident_id  # what the button does in the daemon
            badge.uplink.wake()
            print(incident, pressed, flush=True)
        elif line.strip() == "close":
            now = time.monotonic_ns()
            facts = SegmentFacts(
                seq=ring.next_seq,
                boot=ring.boot,
                mono_start_ns=now - _STEP_NS,
                mono_end_ns=now,
                wall_start_ns=time.time_ns() - _STEP_NS,
                wall_end_ns=time.time_ns(),
                codec={"container": "mpegts"},
                previous_header_sha256=ring.last_header_digest,
            )
            sealed = seal_segment(os.urandom(2000), facts, bundle.identity, bundle.custodian_key)
            recorder.segment_stored(ring.store(sealed))
            _wait_for(_receipted(receipts, incident), "the incident receipt")
            print("closed", flush=True)
    badge.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``badge BUNDLE DATA``: the pressing badge of the alert benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.alert", description=__doc__)
    parser.add_argument("role", choices=["badge"])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data", type=Path)
    args = parser.parse_args(argv)
    return _badge(args.bundle, args.data)


if __name__ == "__main__":
    sys.exit(main())
