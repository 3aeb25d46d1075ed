"""The systemd units as shipped: every one bounded and hardened, the console apart from the
gateway, ``systemd-analyze security`` on each, and mosquitto run with the drop-in's privileges."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import ConsoleLimits
from tests.mosquitto import HOST, MqttSession, running_broker

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "systemd"
OUR_UNITS = ("medbadge-gateway.service", "medbadge-console.service", "medbadge-badge.service")
DROP_IN = SYSTEMD / "mosquitto.service.d" / "medbadge.conf"
DISTRIBUTION_MOSQUITTO = Path("/lib/systemd/system/mosquitto.service")
BOUNDS = ("LimitNOFILE", "MemoryMax", "TasksMax")
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
}
"""What every unit (and the mosquitto drop-in) sets, and to what."""
EXPOSURE_AT_MOST = 4.0
"""``systemd-analyze security`` calls 0-4 "OK"; the distribution's mosquitto unit is 9.6."""
_BYTES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def service_settings(path: Path) -> dict[str, list[str]]:
    """The [Service] section's settings, each key with every value it is given, in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def last(settings: dict[str, list[str]], key: str) -> str:
    """The value that wins (systemd: the last one given)."""
    values = settings.get(key)
    assert values, f"{key}= is not set"
    return values[-1]


def size_bytes(value: str) -> int:
    found = re.fullmatch(r"(\d+)([KMG]?)", value)
    assert found is not None, f"{value!r} is not a size"
    return int(found.group(1)) * _BYTES.get(found.group(2), 1)


def unit_files() -> Iterator[Path]:
    yield from (SYSTEMD / name for name in OUR_UNITS)
    yield DROP_IN


@pytest.mark.parametrize("path", list(unit_files()), ids=lambda path: path.name)
def test_every_unit_is_bounded_and_hardened(path: Path) -> None:
    settings = service_settings(path)
    for key in BOUNDS:
        value = last(settings, key)
        assert value not in ("", "infinity"), f"{path.name}: {key}={value} bounds nothing"
    assert int(last(settings, "LimitNOFILE")) > 1024, "no more handles than the default"
    assert size_bytes(last(settings, "MemoryHigh")) < size_bytes(last(settings, "MemoryMax"))
    for key, value in HARDENING.items():
        assert last(settings, key) == value, f"{path.name}: {key}= is not {value!r}"
    assert last(settings, "ReadWritePaths").startswith("/var/lib/medbadge-")


def test_the_console_is_its_own_unit_and_yields_to_the_intake() -> None:
    gateway = service_settings(SYSTEMD / "medbadge-gateway.service")
    console = service_settings(SYSTEMD / "medbadge-console.service")
    assert last(gateway, "ExecStart").endswith(" run")
    assert last(console, "ExecStart").endswith(" console")
    assert last(console, "Type") == "notify" and last(console, "WatchdogSec")
    assert int(last(console, "CPUWeight")) < int(last(gateway, "CPUWeight"))
    assert int(last(console, "IOWeight")) < int(last(gateway, "IOWeight"))
    # the console's own handles cover its connection cap with room for the database and files
    assert int(last(console, "LimitNOFILE")) >= 2 * ConsoleLimits().max_connections


def test_the_mosquitto_drop_in_runs_the_broker_unprivileged() -> None:
    settings = service_settings(DROP_IN)
    assert settings["ExecStart"][0] == "" and settings["ExecStartPre"] == [""]
    assert last(settings, "User") == last(settings, "Group") == "mosquitto"
    assert last(settings, "AmbientCapabilities") == ""
    assert last(settings, "ReadWritePaths") == "/var/lib/medbadge-broker"


def exposure(unit: Path) -> float:
    """``systemd-analyze security --offline=yes``'s overall exposure of ``unit``."""
    answer = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", answer.stdout)
    assert found is not None, answer.stdout + answer.stderr
    return float(found.group(1))


def systemd_analyze_or_fail() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: run scripts/ensure-system-deps")


@pytest.mark.parametrize("name", OUR_UNITS)
def test_systemd_rates_our_units_ok(name: str) -> None:
    systemd_analyze_or_fail()
    assert exposure(SYSTEMD / name) <= EXPOSURE_AT_MOST


def test_systemd_rates_mosquitto_with_the_drop_in_ok(tmp_path: Path) -> None:
    systemd_analyze_or_fail()
    if not DISTRIBUTION_MOSQUITTO.is_file():
        pytest.fail(f"{DISTRIBUTION_MOSQUITTO} is missing: run scripts/ensure-system-deps")
    unit = tmp_path / "mosquitto.service"
    shutil.copy(DISTRIBUTION_MOSQUITTO, unit)
    (tmp_path / "mosquitto.service.d").mkdir()
    shutil.copy(DROP_IN, tmp_path / "mosquitto.service.d" / DROP_IN.name)
    with_drop_in = exposure(unit)
    assert with_drop_in <= EXPOSURE_AT_MOST < exposure(DISTRIBUTION_MOSQUITTO)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing to the mosquitto account needs root")
def test_mosquitto_serves_tls_with_the_drop_ins_privileges() -> None:
    """As the mosquitto account, no capabilities, no new privileges: it still binds its TLS
    port, reads its configuration and certificates, and lets a badge log in."""
    directory = Path(tempfile.mkdtemp(prefix="medbadge-broker-"))
    directory.chmod(0o755)  # the broker account must be able to walk into its directory
    unprivileged = [
        "setpriv",
        "--reuid=mosquitto",
        "--regid=mosquitto",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
    ]
    try:
        with running_broker(
            directory / "broker", run_as_user="mosquitto", launcher=unprivileged
        ) as broker:
            session = MqttSession(
                HOST, broker.tls_port, "badge-a", broker.password("badge-a"), tls_ca=broker.ca_file
            )
            session.connect()
            assert session.connack is not None and session.connack.value == 0
            session.close()
            status = Path(f"/proc/{broker.pid}/status").read_text()
            effective = re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.MULTILINE)
            assert effective is not None and int(effective.group(1), 16) == 0
            assert re.search(r"^NoNewPrivs:\s*1$", status, re.MULTILINE)
            uid = re.search(r"^Uid:\s*(\d+)", status, re.MULTILINE)
            assert uid is not None and int(uid.group(1)) != 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)
