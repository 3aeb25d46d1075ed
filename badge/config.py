"""The badge configuration: one TOML file, typed, with defaults and range checks.

See docs/badge-config.md for every key and its default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from badge.errors import ConfigError

SourceKind = Literal["synthetic", "opencv", "picamera2"]
AudioKind = Literal["synthetic", "alsa", "none"]
GaugeKind = Literal["max17048", "none"]
KeyStoreKind = Literal["file", "pkcs11"]


@dataclass(frozen=True)
class BadgeSection:
    """Who the badge is and where it keeps its data."""

    bundle: Path = Path("/var/lib/medbadge-badge/enrolment")
    """The enrolment directory: the key the badge made itself and what the gateway answered
    (``badge enroll`` writes it)."""
    data_dir: Path = Path("/var/lib/medbadge-badge")
    """Ring, outbox, receipts and control socket live here."""
    location: str = ""
    """Location label recorded with every incident, e.g. 'Emergency, bay 3'."""

    @property
    def control_socket(self) -> Path:
        """Where the daemon listens for ``badge press`` and ``badge status``."""
        return self.data_dir / "control.sock"


@dataclass(frozen=True)
class KeySection:
    """Where the badge keeps its signing key: a file it made, or a hardware token."""

    store: KeyStoreKind = "file"
    """``file``: Ed25519 in the enrolment directory; ``pkcs11``: P-256 in a TPM or secure
    element, made there by ``badge enroll`` and never exportable (decision 1901)."""
    pkcs11_module: Path = Path("/usr/lib/aarch64-linux-gnu/pkcs11/libtpm2_pkcs11.so")
    token_label: str = "medbadge"  # noqa: S105 - a token's name, not its PIN
    key_label: str = "badge-signing"
    pin_file: Path = Path("/etc/medbadge/token.pin")
    """The token's user PIN (mode 0600)."""


@dataclass(frozen=True)
class CaptureSection:
    """Camera, microphone and segment settings."""

    source: SourceKind = "synthetic"
    device: str = "0"
    """OpenCV source: a camera index ('0') or a video file path."""
    width: int = 1280
    height: int = 720
    fps: int = 30
    segment_seconds: float = 2.0
    audio: AudioKind = "synthetic"
    audio_device: str = "default"
    pre_roll_audio: bool = True
    """Whether footage before a press carries sound (privacy law may say no)."""


@dataclass(frozen=True)
class IncidentSection:
    """How much footage an incident keeps."""

    pre_roll_seconds: float = 60.0
    post_roll_seconds: float = 120.0


@dataclass(frozen=True)
class StorageSection:
    """Bounds of the ring on flash."""

    max_bytes: int = 2_000_000_000


@dataclass(frozen=True)
class ButtonSection:
    """The alert button and the signs that recording is on."""

    pin: int | None = 17
    """BCM pin of the alert button (pulled up; the press connects it to ground)."""
    bounce_ms: int = 50
    led_pin: int | None = None
    buzzer_pin: int | None = None


@dataclass(frozen=True)
class BatterySection:
    """The battery's fuel gauge (docs/hardware.md, "The fuel gauge")."""

    gauge: GaugeKind = "max17048"
    """The gauge fitted; "none" where the badge has none (its heartbeats say null)."""
    i2c_bus: int = 1
    """The I2C adapter the gauge is wired to: /dev/i2c-<i2c_bus>."""
    address: int = 0x36
    """The gauge's 7-bit I2C address."""
    poll_seconds: float = 30.0
    """How often the gauge is read (off the heartbeat's path)."""


@dataclass(frozen=True)
class UplinkSection:
    """How the badge sends alerts, incidents and heartbeats to the hospital gateway."""

    enabled: bool = True
    """Off: the badge only records (incidents wait in the outbox until it is on)."""
    chunk_bytes: int = 256 * 1024
    """Segment data per MQTT message; lowered further if the broker's packet limit says so."""
    heartbeat_seconds: float = 10.0
    bandwidth_bytes_per_s: int = 0
    """Cap on video upload bytes per second; 0 means no cap. Alerts are never held back."""
    tls: bool = True
    """Plain MQTT is accepted only to a broker on loopback (development)."""


@dataclass(frozen=True)
class BadgeConfig:
    """The whole badge configuration."""

    badge: BadgeSection = field(default_factory=BadgeSection)
    key: KeySection = field(default_factory=KeySection)
    capture: CaptureSection = field(default_factory=CaptureSection)
    incident: IncidentSection = field(default_factory=IncidentSection)
    storage: StorageSection = field(default_factory=StorageSection)
    button: ButtonSection = field(default_factory=ButtonSection)
    battery: BatterySection = field(default_factory=BatterySection)
    uplink: UplinkSection = field(default_factory=UplinkSection)

    def __post_init__(self) -> None:
        _check_range("incident.pre_roll_seconds", self.incident.pre_roll_seconds, 0, 300)
        _check_range("incident.post_roll_seconds", self.incident.post_roll_seconds, 0, 3600)
        _check_range("capture.segment_seconds", self.capture.segment_seconds, 0.5, 10)
        _check_range("capture.fps", self.capture.fps, 1, 120)
        _check_range("capture.width", self.capture.width, 16, 4096)
        _check_range("capture.height", self.capture.height, 16, 4096)
        _check_range("button.bounce_ms", self.button.bounce_ms, 0, 1000)
        _check_range("storage.max_bytes", self.storage.max_bytes, 10_000_000, 2**50)
        _check_range("uplink.chunk_bytes", self.uplink.chunk_bytes, 1024, 1024 * 1024)
        _check_range("uplink.heartbeat_seconds", self.uplink.heartbeat_seconds, 0.5, 3600)
        _check_range("uplink.bandwidth_bytes_per_s", self.uplink.bandwidth_bytes_per_s, 0, 10**10)
        _check_choice("capture.source", self.capture.source, ("synthetic", "opencv", "picamera2"))
        _check_choice("capture.audio", self.capture.audio, ("synthetic", "alsa", "none"))
        _check_choice("battery.gauge", self.battery.gauge, ("max17048", "none"))
        _check_range("battery.i2c_bus", self.battery.i2c_bus, 0, 255)
        _check_range("battery.address", self.battery.address, 0x08, 0x77)
        _check_range("battery.poll_seconds", self.battery.poll_seconds, 1, 3600)
        _check_choice("key.store", self.key.store, ("file", "pkcs11"))

    @classmethod
    def load(cls, path: Path) -> BadgeConfig:
        """Read a TOML file; every problem names the file and the key."""
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"configuration file {path} cannot be read: {error}") from None
        try:
            return cls.from_mapping(raw)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> BadgeConfig:
        """Build a configuration from parsed TOML tables."""
        sections: dict[str, Any] = {}
        for section in fields(cls):
            table = raw.pop(section.name, {})
            if not isinstance(table, dict):
                raise ConfigError(f"[{section.name}] must be a table")
            sections[section.name] = _section(section.name, _section_type(section.type), table)
        if raw:
            raise ConfigError(f"unknown section(s) {sorted(raw)}")
        return cls(**sections)


_Section = TypeVar("_Section")
_SECTION_TYPES: dict[str, type] = {
    "BadgeSection": BadgeSection,
    "KeySection": KeySection,
    "CaptureSection": CaptureSection,
    "IncidentSection": IncidentSection,
    "StorageSection": StorageSection,
    "ButtonSection": ButtonSection,
    "BatterySection": BatterySection,
    "UplinkSection": UplinkSection,
}


def _section_type(annotation: object) -> type:
    return _SECTION_TYPES[str(annotation)]


def _section(name: str, section_type: type[_Section], table: dict[str, Any]) -> _Section:
    known = {item.name: item for item in fields(section_type)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}")
        values[key] = _convert(f"{name}.{key}", str(known[key].type), value)
    return section_type(**values)


def _convert(key: str, annotation: str, value: object) -> object:
    """Check a TOML value against its field's annotation (as a string)."""
    if annotation == "Path":
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a path string")
        return Path(value)
    if annotation == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false")
        return value
    if annotation in ("int", "int | None"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be a whole number")
        return value
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string")
    return value


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key} = {value} is out of range ({low} to {high})")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} = {value!r} is not one of {', '.join(choices)}")
