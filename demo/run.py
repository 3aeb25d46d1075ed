"""The end-to-end demo (``make demo``): a hospital, a broker, a gateway and one badge, for real.

It runs the product's own commands as separate processes, exactly as a hospital would:
``gateway init``, ``gateway enroll``, ``gateway broker-config``, mosquitto with that
configuration, ``gateway run``, ``gateway console``, ``badge run`` on the synthetic camera,
then ``badge press``;
it waits until the gateway has receipted the whole incident and reports what happened.
System tests and benchmarks drive the same :class:`Demo` with other :class:`DemoSettings`
(a smaller picture, shorter rolls, a bandwidth cap) and kill and restart its processes.

This module is long because it is one script a reader follows from the first command to the
last; it is not part of the product and is not installed.
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
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from badge.control import send_command
from badge.errors import BadgeError
from badge.receipts import ReceiptStore, StoredReceipt
from evidence.bundle import EnrolmentBundle
from evidence.messages import Receipt
from gateway.console.users import Role, UserDirectory
from gateway.datadir import GatewayDataDir

BADGE_ID = "demo-badge-01"
PRE_ROLL_S = 10
POST_ROLL_S = 6
STOP_WAIT_S = 30


DEMO_ADMIN = "demo-admin"
DEMO_OFFICER = "demo-officer"
DEMO_PASSWORD = "demo-password-123"  # noqa: S105 - the demo's own, printed for the user


class DemoError(Exception):
    """A step of the demo failed; the message says which and where to look."""


@dataclass(frozen=True)
class DemoSettings:
    """What the demo's badge records and how it uploads (the defaults are ``make demo``'s)."""

    width: int = 1280
    height: int = 720
    segment_seconds: float = 2.0
    pre_roll_s: float = PRE_ROLL_S
    post_roll_s: float = POST_ROLL_S
    chunk_bytes: int = 256 * 1024
    """Segment data per MQTT message (``[uplink] chunk_bytes``)."""
    bandwidth_bytes_per_s: int = 0
    """The badge's upload cap (``[uplink] bandwidth_bytes_per_s``); 0 means none."""
    audio: str = "synthetic"


@dataclass(frozen=True)
class DemoPress:
    """What ``badge press`` answered, and when (gateway-host wall clock) it was pressed."""

    incident_id: str
    pressed_wall_ns: int
    post_roll_until_wall_ns: int
    pre_roll: tuple[int, int] | None
    """The segments stored before the press that it pinned (first, last), if any."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


def _silent(_text: str) -> None:
    """Say nothing (a benchmark prints only its figures)."""


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DemoError(f"{' '.join(args[:4])} failed: {result.stderr.strip()}")


def _enrolment_code(gateway: subprocess.Popen[str]) -> str:
    """The code ``gateway enroll`` prints first (it is listening by then)."""
    for line in gateway.stdout or ():
        if "code for badge" in line:
            return line.rsplit(" ", 1)[1].strip()
    raise DemoError(f"gateway enroll printed no code (exit {gateway.wait()})")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.1 s; raise DemoError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _port_open(port: int, address: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((address, port)) == 0


class Demo:
    """The processes of one demo run, all under ``root``."""

    def __init__(
        self, root: Path, settings: DemoSettings | None = None, *, narrate: bool = True
    ) -> None:
        """Plan a run in ``root`` (which must exist); nothing starts until asked.

        ``narrate`` prints each step as it starts (benchmarks turn it off).
        """
        self.root = root
        self.settings = settings or DemoSettings()
        self._say: Callable[[str], None] = _step if narrate else _silent
        self.gateway_data = root / "gateway"
        self.broker_dir = root / "broker"
        self.bundle = root / "badge-bundle"
        self.badge_data = root / "badge"
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.broker_address = "127.0.0.1"
        """The address the broker's TLS listener is bound to."""
        self.port = _free_port()
        self.console_port = _free_port()
        bin_dir = Path(sys.executable).parent
        self.gateway_cmd = [str(bin_dir / "gateway"), "--data", str(self.gateway_data)]
        self.badge_cmd = [str(bin_dir / "badge"), "--config", str(root / "badge.toml")]

    def _start(
        self, name: str, args: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        # appended to, so a restarted process's log follows its predecessor's
        with (self.root / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.processes.append((name, process))
        return process

    def _alive(self, name: str, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            raise DemoError(f"{name} exited early; see {self.root / (name + '.log')}")

    def process(self, name: str) -> subprocess.Popen[bytes]:
        """The newest process started as ``name`` ("mosquitto", "gateway", "console", "badge")."""
        for started, process in reversed(self.processes):
            if started == name:
                return process
        raise DemoError(f"no {name} process was started")

    def kill(self, name: str) -> None:
        """SIGKILL the newest ``name`` process (a crash: no goodbye) and reap it."""
        process = self.process(name)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_WAIT_S)

    def terminate(self, name: str) -> None:
        """Stop the newest ``name`` process cleanly (SIGTERM) and wait for it."""
        process = self.process(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_WAIT_S)

    def set_up_hospital(self) -> None:
        """Create the hospital's keys and enrol one badge."""
        self._say("gateway init: hospital keys (0600), evidence CA, database, console admin")
        password_file = self.root / "console-admin.password"
        password_file.write_text(DEMO_PASSWORD + "\n")
        _run(
            *self.gateway_cmd,
            "init",
            "--hospital",
            "Demo City Hospital",
            "--admin",
            DEMO_ADMIN,
            "--admin-password-file",
            str(password_file),
        )
        add_demo_officer(self.gateway_data)
        self.enrol_badge()

    def enrol_badge(self) -> None:
        """``gateway enroll`` gives a one-time code; ``badge enroll`` makes the badge's own key
        and enrols it with the code; both show the key's fingerprint."""
        self._say(
            f"gateway enroll {BADGE_ID}: a one-time code; badge enroll: the badge makes its own "
            "key (0600, never leaves it) and enrols the public key with the code"
        )
        self.write_badge_config()
        listen = f"127.0.0.1:{_free_port()}"
        gateway = subprocess.Popen(
            [
                *self.gateway_cmd,
                "enroll",
                BADGE_ID,
                "--wearer",
                "Nurse A. Bekova",
                "--location",
                "Emergency, bay 3",
                "--broker-port",
                str(self.port),
                "--operator",
                "demo",
                "--listen",
                listen,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            code = _enrolment_code(gateway)
            _run(
                *self.badge_cmd,
                "enroll",
                "--gateway",
                f"http://{listen}",
                "--badge-id",
                BADGE_ID,
                "--code",
                code,
            )
            output, _ = gateway.communicate(timeout=30)
        finally:
            if gateway.poll() is None:
                gateway.kill()
                gateway.wait()
        if gateway.returncode != 0:
            raise DemoError(f"gateway enroll failed: {output.strip()}")
        for line in output.splitlines():
            if "fingerprint:" in line:
                self._say(f"the gateway and the badge agree on the {line.strip()}")

    def configure_broker(self) -> None:
        """Write the broker configuration (``gateway broker-config``) and ``gateway.toml``."""
        self._say(
            f"gateway broker-config: TLS on port {self.port}, badges and the gateway log in by "
            "their evidence-CA certificates (no passwords), per-badge ACL"
        )
        user = pwd.getpwuid(os.geteuid()).pw_name
        _run(
            *self.gateway_cmd,
            "broker-config",
            "--out",
            str(self.broker_dir),
            "--tls-port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--broker-user",
            user,
            "--badge-auth",
            "certificate",
        )
        (self.gateway_data / "gateway.toml").write_text(
            f'[broker]\nport = {self.port}\n\n[paths]\nbroker_dir = "{self.broker_dir}"\n\n'
            # plain HTTP on loopback: a browser here trusts no evidence CA yet
            f'[console]\nhost = "127.0.0.1"\nport = {self.console_port}\ntls = false\n'
        )

    def start_broker(self) -> None:
        """Start mosquitto with the written configuration (again after a stop or a kill)."""
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        process = self._start(
            "mosquitto", [mosquitto, "-c", str(self.broker_dir / "mosquitto.conf")]
        )
        wait_for(
            lambda: _port_open(self.port, self.broker_address) or process.poll() is not None,
            15,
            "mosquitto",
        )
        self._alive("mosquitto", process)

    def start_gateway(self) -> None:
        """Start ``gateway run`` and wait for systemd's READY=1 on our own notify socket."""
        self._say("gateway run: intake, vault, ledger, receipts, live alerts, webhooks")
        self._start_notified("gateway", [*self.gateway_cmd, "run"])

    def start_console(self) -> None:
        """Start ``gateway console`` (a process of its own) and wait for its READY=1."""
        self._say(f"gateway console: the security console at {self.console_url}")
        self._start_notified("console", [*self.gateway_cmd, "console"])

    @property
    def console_url(self) -> str:
        """Where a browser on this machine reaches the demo's console."""
        return f"http://127.0.0.1:{self.console_port}/"

    def console_status(self) -> str:
        """What the console's login page answers: "answering" or what went wrong."""
        try:
            with urllib.request.urlopen(self.console_url + "login", timeout=5) as page:  # noqa: S310
                return "answering" if page.status == 200 else f"HTTP {page.status}"
        except OSError as error:
            return f"not answering: {error}"

    def _start_notified(self, name: str, args: Sequence[str]) -> None:
        """Start ``args`` as ``name`` and wait up to 30 s for READY=1 on a notify socket."""
        notify_path = self.root / f"{name}-notify.sock"
        notify_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(0.5)
        try:
            process = self._start(name, args, env={**os.environ, "NOTIFY_SOCKET": str(notify_path)})
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                self._alive(name, process)
                try:
                    if b"READY=1" in notify.recv(4096):
                        return
                except TimeoutError:
                    continue
        finally:
            notify.close()
        raise DemoError(f"{name} did not report READY within 30 s; see {name}.log")

    def write_badge_config(self) -> None:
        """Write ``badge.toml`` for the synthetic camera and microphone."""
        settings = self.settings
        text = (
            f'[badge]\nbundle = "{self.bundle}"\ndata_dir = "{self.badge_data}"\n'
            'location = "Emergency, bay 3"\n\n'
            f'[capture]\nsource = "synthetic"\nwidth = {settings.width}\n'
            f"height = {settings.height}\nsegment_seconds = {settings.segment_seconds}\n"
            f'audio = "{settings.audio}"\n\n'
            f"[incident]\npre_roll_seconds = {settings.pre_roll_s}\n"
            f"post_roll_seconds = {settings.post_roll_s}\n\n"
            f"[uplink]\nchunk_bytes = {settings.chunk_bytes}\n"
            f"bandwidth_bytes_per_s = {settings.bandwidth_bytes_per_s}\n"
        )
        (self.root / "badge.toml").write_text(text)

    def start_badge(self) -> None:
        """Start ``badge run`` on the synthetic camera and microphone (again after a kill)."""
        settings = self.settings
        self._say(
            f"badge run: synthetic camera {settings.width}x{settings.height} at 30 fps, "
            f"{settings.segment_seconds:g} s segments, sealed to the ring"
        )
        self.write_badge_config()
        process = self._start("badge", [*self.badge_cmd, "run"])
        socket_path = self.badge_data / "control.sock"

        def answering() -> bool:
            self._alive("badge", process)
            try:
                send_command(socket_path, "status", timeout=1)
            except BadgeError:
                return False
            return True

        wait_for(answering, 30, "the badge to start")

    def press(self) -> DemoPress:
        """``badge press``: the wearer presses the alert button."""
        pressed_ns = time.time_ns()
        answer = send_command(self.badge_data / "control.sock", "press")
        pre_roll = answer.get("pre_roll")
        return DemoPress(
            str(answer["incident"]),
            pressed_ns,
            int(answer["post_roll_until_wall_ns"]),
            (int(pre_roll[0]), int(pre_roll[1])) if pre_roll else None,
        )

    def badge_receipt(self, subject: str, key: str) -> StoredReceipt | None:
        """The receipt the badge has kept for ``subject`` and ``key``, if any."""
        receipts = ReceiptStore(self.badge_data / "receipts.db")
        try:
            return receipts.get(subject, key)
        finally:
            receipts.close()

    def press_and_follow(self) -> str:
        """Press the button, wait until the gateway has receipted the whole incident; its id."""
        self._say(f"recording the {self.settings.pre_roll_s:g} s pre-roll")
        time.sleep(self.settings.pre_roll_s + 2)
        self._say("badge press: the wearer presses the alert button")
        pressed = self.press()
        incident = pressed.incident_id
        bundle = EnrolmentBundle.load(self.bundle)
        receipts = ReceiptStore(self.badge_data / "receipts.db")
        try:
            wait_for(lambda: receipts.get("alert", incident) is not None, 15, "the alert receipt")
            alert = receipts.get("alert", incident)
            if pressed.pre_roll is None:
                raise DemoError(
                    f"the press pinned no pre-roll segment; see {self.root / 'badge.log'}"
                )
            first, last = pressed.pre_roll
            self._say(
                f"pre-roll (segments {first}..{last}) goes to the gateway at once, "
                "while the post-roll is recorded"
            )

            def pre_roll_receipts() -> list[StoredReceipt | None]:
                return [receipts.get("segment", str(seq)) for seq in range(first, last + 1)]

            wait_for(
                lambda: all(pre_roll_receipts()), 60, "the gateway's receipts for the pre-roll"
            )
            pre_roll = pre_roll_receipts()
            self._say(
                f"post-roll {self.settings.post_roll_s:g} s: each segment goes as it is sealed, "
                "then the signed incident record"
            )
            wait_for(
                lambda: receipts.get("incident", incident) is not None,
                120,
                "the gateway's receipt for the whole incident",
            )
            closing = receipts.get("incident", incident)
            segments = [r for r in receipts.all() if r.subject == "segment"]
        finally:
            receipts.close()
        kept = [stored for stored in pre_roll if stored is not None]
        if alert is None or closing is None or len(kept) != len(pre_roll):
            raise DemoError("a receipt vanished from the badge's receipt store")
        pre_roll_kept_ns = max(stored.kept_wall_ns for stored in kept)
        # every receipt the badge kept must verify under the gateway's public key
        opened = {
            (stored.subject, stored.key): Receipt.open(
                stored.payload, bundle.gateway_key, "receipt"
            )
            for stored in (alert, closing, *segments)
        }
        latency_ms = (opened["alert", incident].received_wall_ns - pressed.pressed_wall_ns) / 1e6
        record = self.badge_data / "incidents" / f"{incident}.incident"
        vault_bytes = sum(p.stat().st_size for p in (self.gateway_data / "vault").rglob("*.mbseal"))
        print()
        print(f"incident {incident} from badge {BADGE_ID} (Nurse A. Bekova, Emergency, bay 3)")
        print(f"  alert reached the gateway {latency_ms:.1f} ms after the press")
        print(f"  security console ({self.console_status()}) at {self.console_url}")
        when = "before" if pre_roll_kept_ns < pressed.post_roll_until_wall_ns else "after"
        print(
            f"  pre-roll: {len(kept)} segments receipted "
            f"{(pre_roll_kept_ns - pressed.pressed_wall_ns) / 1e6:.0f} ms after the press, "
            f"{when} the post-roll ended"
        )
        print(f"  {len(segments)} sealed segments receipted, {vault_bytes} bytes in the vault")
        print(
            f"  incident receipt: SHA-256 {closing.sha256.hex()[:16]}..., "
            "signature verified under the gateway's public key"
        )
        print(f"  signed incident record on the badge: {record}")
        print(f"  gateway store: {self.gateway_data}")
        return incident

    def export_and_verify(self, incident: str) -> None:
        """Export the incident for court and check the package as a court would, offline."""
        package = self.root / f"incident-{incident}.zip"
        self._say("gateway export: the court package (recorded in the custody log)")
        _run(
            *self.gateway_cmd,
            "export",
            incident,
            "-o",
            str(package),
            "--actor",
            DEMO_ADMIN,
            "--justification",
            "demo: evidence requested by the police for case 2026-1124",
        )
        self._say(f"evidence verify {package.name}: offline, trusting neither us nor the hospital")
        verifier = Path(sys.executable).parent / "evidence"
        result = subprocess.run(
            [str(verifier), "verify", str(package)], capture_output=True, text=True, check=False
        )
        print()
        print(result.stdout.rstrip())
        if result.returncode != 0:
            raise DemoError(f"the exported package did not verify: {result.stderr.strip()}")
        print(f"\ncourt package: {package} (standard-tool checks in its VERIFY.txt)")

    def stop(self) -> None:
        """Stop every process, newest first, cleanly."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_WAIT_S)


def add_demo_officer(gateway_data: Path) -> None:
    """A security officer for the demo, as an administrator would add one in the console."""
    storage = GatewayDataDir(gateway_data).storage()
    try:
        UserDirectory(storage.users).create(
            DEMO_OFFICER, DEMO_PASSWORD, Role.OFFICER, created_by=DEMO_ADMIN
        )
    finally:
        storage.close()


def _keep_running(demo: Demo) -> None:
    """Leave the console up until Ctrl-C, saying where it is and how to log in."""
    print(f"\nsecurity console: {demo.console_url}")
    print(f"  log in as {DEMO_OFFICER} (security officer) or {DEMO_ADMIN} (administrator),")
    print(f"  password {DEMO_PASSWORD!r} (the administrator first sets up two-step login with")
    print("  an authenticator app); press Ctrl-C to stop everything", flush=True)
    try:
        while demo.process("gateway").poll() is None and demo.process("console").poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo in ``--dir`` (default ./demo-data, replaced on every run)."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("demo-data"))
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the gateway and its console running at the end, until Ctrl-C",
    )
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    demo = Demo(root)
    try:
        demo.set_up_hospital()
        demo.configure_broker()
        demo.start_broker()
        demo.start_gateway()
        demo.start_console()
        demo.start_badge()
        demo.export_and_verify(demo.press_and_follow())
        if args.keep_running:
            _keep_running(demo)
    except (DemoError, BadgeError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
    print(f"\nlogs and data: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
