"""The end-to-end demo (``make demo``): a hospital, a broker, a gateway and one badge, for real.

It runs the product's own commands as separate processes, exactly as a hospital would:
``gateway init``, ``gateway enroll``, ``gateway broker-config``, mosquitto with that
configuration, ``gateway run``, ``badge run`` on the synthetic camera, then ``badge press``;
it waits until the gateway has receipted the whole incident and reports what happened.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from badge.control import send_command
from badge.errors import BadgeError
from badge.receipts import ReceiptStore
from evidence.bundle import EnrolmentBundle
from evidence.messages import Receipt

BADGE_ID = "demo-badge-01"
PRE_ROLL_S = 10
POST_ROLL_S = 6


class DemoError(Exception):
    """A step of the demo failed; the message says which and where to look."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DemoError(f"{' '.join(args[:4])} failed: {result.stderr.strip()}")


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Demo:
    """The processes of one demo run, all under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gateway_data = root / "gateway"
        self.bundle = root / "badge-bundle"
        self.badge_data = root / "badge"
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.port = _free_port()
        bin_dir = Path(sys.executable).parent
        self.gateway_cmd = [str(bin_dir / "gateway"), "--data", str(self.gateway_data)]
        self.badge_cmd = [str(bin_dir / "badge"), "--config", str(root / "badge.toml")]

    def _start(self, name: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("wb")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append((name, process))
        return process

    def _alive(self, name: str, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            raise DemoError(f"{name} exited early; see {self.root / (name + '.log')}")

    def set_up_hospital(self) -> None:
        """Create the hospital's keys and enrol one badge."""
        _step("gateway init: hospital keys (0600), evidence CA, database")
        _run(*self.gateway_cmd, "init", "--hospital", "Demo City Hospital")
        _step(f"gateway enroll {BADGE_ID}: badge identity, broker credentials, bundle")
        _run(
            *self.gateway_cmd,
            "enroll",
            BADGE_ID,
            "-o",
            str(self.bundle),
            "--wearer",
            "Nurse A. Bekova",
            "--location",
            "Emergency, bay 3",
            "--broker-port",
            str(self.port),
            "--operator",
            "demo",
        )

    def start_broker(self) -> None:
        """Write the broker configuration and start mosquitto with it."""
        _step(f"gateway broker-config: per-badge accounts and ACL, TLS on port {self.port}")
        broker_dir = self.root / "broker"
        user = pwd.getpwuid(os.geteuid()).pw_name
        _run(
            *self.gateway_cmd,
            "broker-config",
            "--out",
            str(broker_dir),
            "--tls-port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--broker-user",
            user,
        )
        (self.gateway_data / "gateway.toml").write_text(
            f'[broker]\nport = {self.port}\n\n[paths]\nbroker_dir = "{broker_dir}"\n'
        )
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        process = self._start("mosquitto", [mosquitto, "-c", str(broker_dir / "mosquitto.conf")])
        _wait(lambda: _port_open(self.port) or process.poll() is not None, 15, "mosquitto")
        self._alive("mosquitto", process)

    def start_gateway(self) -> None:
        """Start ``gateway run`` and wait for systemd's READY=1 on our own notify socket."""
        _step("gateway run: intake, vault, ledger, receipts, live alerts")
        notify_path = self.root / "notify.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(0.5)
        process = subprocess.Popen(
            [*self.gateway_cmd, "run"],
            stdout=(self.root / "gateway.log").open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
        )
        self.processes.append(("gateway", process))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._alive("gateway", process)
            try:
                if b"READY=1" in notify.recv(4096):
                    notify.close()
                    return
            except TimeoutError:
                continue
        raise DemoError("gateway did not report READY within 30 s; see gateway.log")

    def start_badge(self) -> None:
        """Start ``badge run`` on the synthetic camera and microphone."""
        _step("badge run: synthetic camera 1280x720 at 30 fps, 2 s segments, sealed to the ring")
        (self.root / "badge.toml").write_text(
            f'[badge]\nbundle = "{self.bundle}"\ndata_dir = "{self.badge_data}"\n'
            'location = "Emergency, bay 3"\n\n'
            '[capture]\nsource = "synthetic"\nwidth = 1280\nheight = 720\n\n'
            f"[incident]\npre_roll_seconds = {PRE_ROLL_S}\npost_roll_seconds = {POST_ROLL_S}\n"
        )
        process = self._start("badge", [*self.badge_cmd, "run"])
        socket_path = self.badge_data / "control.sock"

        def answering() -> bool:
            self._alive("badge", process)
            try:
                send_command(socket_path, "status", timeout=1)
            except BadgeError:
                return False
            return True

        _wait(answering, 30, "the badge to start")

    def press_and_follow(self) -> None:
        """Press the button and wait until the gateway has receipted the whole incident."""
        _step(f"recording the {PRE_ROLL_S} s pre-roll")
        time.sleep(PRE_ROLL_S + 2)
        _step("badge press: the wearer presses the alert button")
        pressed_ns = time.time_ns()
        answer = send_command(self.badge_data / "control.sock", "press")
        incident = str(answer["incident"])
        bundle = EnrolmentBundle.load(self.bundle)
        receipts = ReceiptStore(self.badge_data / "receipts.db")
        try:
            _wait(lambda: receipts.get("alert", incident) is not None, 15, "the alert receipt")
            alert = receipts.get("alert", incident)
            _step(f"post-roll {POST_ROLL_S} s, then upload of the incident")
            _wait(
                lambda: receipts.get("incident", incident) is not None,
                120,
                "the gateway's receipt for the whole incident",
            )
            closing = receipts.get("incident", incident)
            segments = [r for r in receipts.all() if r.subject == "segment"]
        finally:
            receipts.close()
        if alert is None or closing is None:
            raise DemoError("a receipt vanished from the badge's receipt store")
        # every receipt the badge kept must verify under the gateway's public key
        opened = {
            (stored.subject, stored.key): Receipt.open(
                stored.payload, bundle.gateway_key, "receipt"
            )
            for stored in (alert, closing, *segments)
        }
        latency_ms = (opened["alert", incident].received_wall_ns - pressed_ns) / 1e6
        record = self.badge_data / "incidents" / f"{incident}.incident"
        vault_bytes = sum(p.stat().st_size for p in (self.gateway_data / "vault").rglob("*.mbseal"))
        print()
        print(f"incident {incident} from badge {BADGE_ID} (Nurse A. Bekova, Emergency, bay 3)")
        print(f"  alert reached the gateway {latency_ms:.1f} ms after the press")
        print(f"  {len(segments)} sealed segments receipted, {vault_bytes} bytes in the vault")
        print(
            f"  incident receipt: SHA-256 {closing.sha256.hex()[:16]}..., "
            "signature verified under the gateway's public key"
        )
        print(f"  signed incident record on the badge: {record}")
        print(f"  gateway store: {self.gateway_data}")

    def stop(self) -> None:
        """Stop every process, newest first, cleanly."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo in ``--dir`` (default ./demo-data, replaced on every run)."""
    parser = argparse.ArgumentParser(prog="python -m gateway.demo", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("demo-data"))
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    demo = Demo(root)
    try:
        demo.set_up_hospital()
        demo.start_broker()
        demo.start_gateway()
        demo.start_badge()
        demo.press_and_follow()
    except (DemoError, BadgeError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
    print(f"\nlogs and data: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
