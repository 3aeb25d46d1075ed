"""``make check-arm64``: the badge installed and run on Debian bookworm arm64, under emulation.

What a Raspberry Pi runs (64-bit Raspberry Pi OS is Debian bookworm arm64), proven on this
machine without one:

1. a bookworm arm64 root built by ``debootstrap`` (cached in ``.cache/arm64/``), its
   binaries run by ``qemu-aarch64-static`` through ``binfmt_misc``;
2. the badge installed into it as docs/hardware.md says: a venv with the system's site
   packages, then ``pip install`` of the wheel built from this checkout with the badge extra
   (wheels for aarch64 from the package index, nothing compiled);
3. the demo's hospital on this machine (``gateway init``, ``enroll``, mosquitto, ``gateway
   run``) and ``badge run`` on the synthetic camera inside the root (``chroot``), a press,
   the whole incident receipted, exported, and ``evidence verify`` saying VERIFIED.

It prints ``uname -m`` inside the root and how long each step took. It needs root (mounts,
chroot, debootstrap) and the packages ``scripts/ensure-arm64-deps`` installs. Emulation is
slow (minutes), so it is not part of ``make test``; tests/demo/test_arm64.py covers the
pure parts (commands, the binfmt check, the cache check).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from badge.control import send_command
from badge.errors import BadgeError
from demo.run import Demo, DemoError, DemoSettings, wait_for

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "arm64"
ROOT = CACHE / "rootfs"
READY_STAMP = ".medbadge-root-ready"
"""Written into the root once debootstrap has finished: a half-built root is never reused."""
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
VENV = "/opt/medbadge"
"""Where the badge's venv lives inside the root, as on a badge (the deployment runbook)."""
WHEEL_DIR = "/tmp/medbadge-wheel"  # noqa: S108 - inside the throwaway root
HOST_CA = "/etc/ssl/certs/build-host-ca.crt"
"""The build host's CA bundle, copied in so pip inside the root trusts what the host trusts."""
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
BADGE_START_S = 240
"""How long ``badge run`` under emulation may take to seal its first segments."""
SEGMENTS_BEFORE_PRESS = 2
"""Segments in the ring before the pre-roll wait starts, so the press always pins some."""
ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Arm64CheckError(DemoError):
    """A step of the arm64 check failed; the message says which."""


def root_is_ready(root: Path) -> bool:
    """Whether ``root`` is a finished debootstrap (its stamp and a python3 are there)."""
    return (root / READY_STAMP).is_file() and (root / "usr" / "bin" / "python3").exists()


def debootstrap_command(target: Path, *, mirror: str = MIRROR) -> list[str]:
    """The debootstrap run that builds the arm64 root in ``target``."""
    return [
        "debootstrap",
        "--arch=arm64",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        mirror,
    ]


def aarch64_registered(status: str) -> bool:
    """Whether a ``binfmt_misc/qemu-aarch64`` entry is enabled with the F flag (the
    interpreter opened at registration, so it works inside a chroot that lacks it)."""
    lines = status.splitlines()
    flags = next((line.split(":", 1)[1] for line in lines if line.startswith("flags:")), "")
    return bool(lines) and lines[0].strip() == "enabled" and "F" in flags


def chroot_command(root: Path, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``argv`` run inside ``root`` with exactly ``env`` (nothing of this host's leaks in)."""
    return [
        "chroot",
        str(root),
        "/usr/bin/env",
        "-i",
        *(f"{key}={value}" for key, value in sorted(env.items())),
        *argv,
    ]


def root_env() -> dict[str, str]:
    """The environment commands get inside the root."""
    return {
        "PATH": ENV_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PIP_CERT": HOST_CA,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
    }


def install_commands(wheel_name: str) -> list[list[str]]:
    """The runbook's install inside the root: a venv seeing the system's site packages, then
    the built wheel with the badge extra (the wheel itself always replaced: same version)
    and ``numpy<2``, the numpy Raspberry Pi OS's camera libraries are built against. The
    ``pi`` extra's picamera2 comes from Raspberry Pi OS, which this root is not."""
    wheel = f"{WHEEL_DIR}/{wheel_name}"
    pip = f"{VENV}/bin/pip"
    return [
        [
            "/bin/sh",
            "-c",
            f"test -x {VENV}/bin/python || python3 -m venv --system-site-packages {VENV}",
        ],
        [pip, "install", "--quiet", "--no-deps", "--force-reinstall", wheel],
        [pip, "install", "--quiet", f"{wheel}[badge]", "numpy<2"],
    ]


class _Clock:
    """Times the steps and prints each as it ends."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"==> {name}", flush=True)
        started = time.monotonic()
        yield
        took = time.monotonic() - started
        self.steps.append((name, took))
        print(f"    {name}: {took:.1f} s", flush=True)


def _run(argv: Sequence[str], *, capture: bool = False) -> str:
    result = subprocess.run(argv, capture_output=capture, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip()[-2000:] if capture else ""
        raise Arm64CheckError(f"{' '.join(argv[:6])} ... failed ({result.returncode}) {detail}")
    return result.stdout if capture else ""


def ensure_binfmt() -> None:
    """Mount binfmt_misc if needed and register qemu-aarch64 from its Debian package."""
    if not (BINFMT / "register").exists():
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    entry = BINFMT / "qemu-aarch64"
    if entry.exists() and aarch64_registered(entry.read_text()):
        return
    if entry.exists():  # registered without F: replace it
        entry.write_text("-1")
    if not QEMU_BINFMT_CONF.is_file():
        raise Arm64CheckError(f"{QEMU_BINFMT_CONF} is missing: run scripts/ensure-arm64-deps")
    (BINFMT / "register").write_text(QEMU_BINFMT_CONF.read_text().strip())
    if not aarch64_registered(entry.read_text()):
        raise Arm64CheckError("qemu-aarch64 did not register with binfmt_misc (flag F)")


HOSTS = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
"""What every installed Debian has in /etc/hosts and debootstrap does not write: the
enrolment bundle names the broker ``localhost`` here."""


def needs_hosts(text: str | None) -> bool:
    """Whether an /etc/hosts (None: absent) lacks a ``localhost`` line."""
    if text is None:
        return True
    return not any(
        "localhost" in line.split("#", 1)[0].split()[1:] for line in text.splitlines()
    )


def ensure_root(root: Path) -> None:
    """Build the arm64 root with debootstrap unless a finished one is cached."""
    hosts = root / "etc" / "hosts"
    if root_is_ready(root):
        print(f"    cached: {root}")
        if needs_hosts(hosts.read_text() if hosts.exists() else None):
            hosts.write_text(HOSTS)
        return
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    _run(debootstrap_command(partial))
    for mounted in ("proc", "sys", "dev/pts", "dev"):  # debootstrap may leave these mounted
        subprocess.run(["umount", "-l", str(partial / mounted)], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    hosts.write_text(HOSTS)
    (root / READY_STAMP).write_text(f"debootstrap {SUITE} arm64 from {MIRROR}\n")


@contextmanager
def mounted(root: Path, shared: Path) -> Iterator[None]:
    """/proc and /dev inside the root, and ``shared`` at the same path in it; all undone."""
    done: list[Path] = []
    try:
        for source, options in (("/proc", ["-t", "proc", "proc"]), ("/dev", ["--bind", "/dev"])):
            target = root / source.lstrip("/")
            target.mkdir(exist_ok=True)
            _run(["mount", *options, str(target)])
            done.append(target)
        inside = root / str(shared).lstrip("/")
        inside.mkdir(parents=True, exist_ok=True)
        _run(["mount", "--bind", str(shared), str(inside)])
        done.append(inside)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def build_wheel(out: Path) -> str:
    """Build this checkout's wheel into ``out``; its file name."""
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)])
    (wheel,) = out.glob("medbadge-*.whl")
    return wheel.name


class EmulatedBadgeDemo(Demo):
    """The demo, with ``badge run`` inside the arm64 root instead of on this machine."""

    def __init__(self, root: Path, work: Path, settings: DemoSettings) -> None:
        super().__init__(work, settings)
        self.badge_cmd = chroot_command(
            root, [f"{VENV}/bin/badge", "--config", str(work / "badge.toml")], root_env()
        )

    def start_badge(self) -> None:
        """``badge run`` in the root; emulated, its imports alone take tens of seconds, so
        it counts as started once it has sealed segments into its ring."""
        self.write_badge_config()
        process = self._start("badge", [*self.badge_cmd, "run"])

        def recording() -> bool:
            self._alive("badge", process)
            try:
                status = send_command(self.badge_data / "control.sock", "status", timeout=1)
            except BadgeError:
                return False
            return int(status["ring"]["segments"]) >= SEGMENTS_BEFORE_PRESS

        wait_for(recording, BADGE_START_S, "the emulated badge to seal its first segments")


def check(root: Path, settings: DemoSettings) -> int:
    """Run every step; 0 when the incident arrived and its package verified."""
    if os.geteuid() != 0:
        raise Arm64CheckError("make check-arm64 needs root (debootstrap, mount, chroot)")
    clock = _Clock()
    total = time.monotonic()
    with clock.step("binfmt_misc: qemu-aarch64-static runs arm64 binaries"):
        ensure_binfmt()
    with clock.step(f"debootstrap {SUITE} arm64 root"):
        ensure_root(root)
    with tempfile.TemporaryDirectory(prefix="medbadge-arm64-") as temp:
        work = Path(temp)
        work.chmod(0o755)
        with clock.step("build the wheel from this checkout"):
            wheel = build_wheel(work / "wheel")
        (root / WHEEL_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / "wheel" / wheel, root / WHEEL_DIR.lstrip("/") / wheel)
        shutil.copy2("/etc/ssl/certs/ca-certificates.crt", root / HOST_CA.lstrip("/"))
        demo_dir = work / "demo"
        demo_dir.mkdir()
        with mounted(root, demo_dir):
            env = root_env()
            machine = _run(chroot_command(root, ["uname", "-m"], env), capture=True).strip()
            print(f"    uname -m inside the root: {machine}")
            if machine != "aarch64":
                raise Arm64CheckError(f"the root runs as {machine}, not aarch64")
            with clock.step(f"install {wheel}[badge] into {VENV} (system site packages)"):
                for command in install_commands(wheel):
                    _run(chroot_command(root, command, env), capture=True)
            probe = (
                "import platform, sys, av, numpy, badge; "
                "print(platform.machine(), sys.version.split()[0], 'PyAV', av.__version__, "
                "'numpy', numpy.__version__, 'cv2 loaded:', 'cv2' in sys.modules)"
            )
            print("    " + _run(
                chroot_command(root, [f"{VENV}/bin/python", "-c", probe], env), capture=True
            ).strip())
            _press_through(EmulatedBadgeDemo(root, demo_dir, settings), clock)
    print("\ntimings:")
    for name, took in clock.steps:
        print(f"  {took:7.1f} s  {name}")
    print(f"  {time.monotonic() - total:7.1f} s  in all")
    print("\narm64 check passed: the badge ran on aarch64 and its incident VERIFIED")
    return 0


def _press_through(demo: EmulatedBadgeDemo, clock: _Clock) -> None:
    """The hospital here, the badge in the root: a press, its incident, its verification."""
    try:
        with clock.step("hospital on this machine: gateway init, enroll, mosquitto, run, console"):
            demo.set_up_hospital()
            demo.configure_broker()
            demo.start_broker()
            demo.start_gateway()
            demo.start_console()
        with clock.step("badge run inside the arm64 root (synthetic camera)"):
            demo.start_badge()
        with clock.step("press: alert, pre-roll, post-roll, incident receipted"):
            incident = demo.press_and_follow()
        with clock.step("export and evidence verify"):
            demo.export_and_verify(incident)
    finally:
        demo.stop()
        for name in ("badge", "gateway"):
            log = demo.root / f"{name}.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-5:]
                print(f"    last lines of {name}.log:", *tail, sep="\n      ")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m demo.arm64 [--size WxH]``."""
    parser = argparse.ArgumentParser(prog="python -m demo.arm64", description=__doc__)
    parser.add_argument("--size", default="320x240", help="synthetic camera size (WxH)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the cached arm64 root")
    args = parser.parse_args(argv)
    width, height = (int(part) for part in args.size.split("x"))
    settings = DemoSettings(
        width=width, height=height, segment_seconds=1.0, pre_roll_s=4, post_roll_s=4
    )
    try:
        return check(args.root, settings)
    except DemoError as error:
        print(f"arm64 check FAILED: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
