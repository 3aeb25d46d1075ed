"""The badge daemon: wires camera, sealer, ring, incidents, button and control socket together.

camera/mic -> CaptureLoop -> Sealer (own thread, bounded queue) -> Ring on flash
button / `badge press` -> IncidentRecorder -> pins in the Ring, records in the Outbox
Outbox + Ring -> Uplink (own threads, MQTT) -> gateway; its receipts free the Ring
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from badge.button import AlertButton, RecordingSigns
from badge.capture import CaptureLoop, CaptureSettings
from badge.config import BadgeConfig, BatterySection, CaptureSection
from badge.control import ControlServer
from badge.errors import BadgeError, StorageFullError
from badge.fuel_gauge import Max17048, SMBusLike, open_max17048
from badge.health import BatteryMonitor, read_health
from badge.heartbeat import read_heartbeat
from badge.incident import IncidentRecorder
from badge.media import EncodedSegment
from badge.outbox import Outbox
from badge.privacy import PreRollMute
from badge.receipts import ReceiptStore
from badge.ring import Ring, StoredSegment
from badge.sealer import Sealer
from badge.signer import load_enrolment
from badge.sources import AudioSource, FrameSource, PacketSource
from badge.uplink import Uplink
from evidence.bundle import TLS_CERT_FILE, TLS_KEY_FILE
from evidence.messages import Heartbeat
from evidence.sd_notify import sd_notify, watchdog_interval_s

log = logging.getLogger(__name__)

_SECOND_NS = 1_000_000_000


def open_video(capture: CaptureSection, badge_id: str) -> FrameSource | PacketSource:
    """Open the configured camera."""
    if capture.source == "picamera2":
        from badge.sources.picamera import PicameraSource  # noqa: PLC0415 - Pi only

        return PicameraSource(
            capture.width, capture.height, capture.fps, capture.segment_seconds, badge_id=badge_id
        )
    if capture.source == "opencv":
        from badge.sources.opencv_camera import OpenCVCamera  # noqa: PLC0415

        device: int | str = int(capture.device) if capture.device.isdigit() else capture.device
        return OpenCVCamera(
            device, badge_id=badge_id, width=capture.width, height=capture.height, fps=capture.fps
        )
    from badge.sources.synthetic import SyntheticCamera  # noqa: PLC0415

    return SyntheticCamera(capture.width, capture.height, capture.fps, badge_id, realtime=True)


def open_battery_gauge(
    battery: BatterySection, smbus: Callable[[int], SMBusLike] | None = None
) -> Callable[[], Max17048] | None:
    """How to open the configured fuel gauge (``smbus``: smbus2's ``SMBus`` unless given);
    None where none is fitted."""
    if battery.gauge == "none":
        return None
    return functools.partial(open_max17048, battery.i2c_bus, address=battery.address, smbus=smbus)


def open_audio(capture: CaptureSection) -> AudioSource | None:
    """Open the configured microphone, if any."""
    if capture.audio == "none":
        return None
    from badge.sources.audio import AlsaMicrophone, SyntheticMicrophone  # noqa: PLC0415

    if capture.audio == "alsa":
        return AlsaMicrophone(capture.audio_device)
    return SyntheticMicrophone(realtime=True)


class BadgeDaemon:
    """One running badge."""

    def __init__(
        self,
        config: BadgeConfig,
        *,
        pin_factory: Any = None,
        smbus: Callable[[int], SMBusLike] | None = None,
    ) -> None:
        self.config = config
        self._pin_factory = pin_factory
        self._stop = threading.Event()
        self._storage_full = False
        data = config.badge.data_dir
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.bundle = load_enrolment(config)
        self.ring = Ring.open(
            data / "ring",
            pre_roll_ns=int(config.incident.pre_roll_seconds * _SECOND_NS),
            max_bytes=config.storage.max_bytes,
        )
        self.outbox = Outbox(data / "outbox.db")
        self.battery = BatteryMonitor(
            open_battery_gauge(config.battery, smbus), poll_seconds=config.battery.poll_seconds
        )
        self.receipts = ReceiptStore(data / "receipts.db")
        self._signs: RecordingSigns | None = None
        self._mute: PreRollMute | None = None
        self.recorder = IncidentRecorder(
            data / "incidents",
            self.ring,
            self.bundle.identity,
            self.outbox,
            pre_roll_ns=int(config.incident.pre_roll_seconds * _SECOND_NS),
            post_roll_ns=int(config.incident.post_roll_seconds * _SECOND_NS),
            location=config.badge.location,
            on_change=self._recording_changed,
            battery_percent=self._battery_percent,
        )
        self.sealer = Sealer(
            self.bundle.identity,
            self.bundle.custodian_key,
            self.ring,
            on_stored=self._segment_stored,
            on_error=self._sealer_error,
        )
        self.capture: CaptureLoop | None = None
        uplink = config.uplink
        self.uplink: Uplink | None = None
        if uplink.enabled:
            self.uplink = Uplink(
                self.bundle.identity,
                self.bundle,
                self.ring,
                self.outbox,
                receipts=self.receipts,
                tls=uplink.tls,
                heartbeat=self.heartbeat,
                chunk_bytes=uplink.chunk_bytes,
                heartbeat_seconds=uplink.heartbeat_seconds,
                bandwidth_bytes_per_s=uplink.bandwidth_bytes_per_s or None,
                client_certificate=(
                    None
                    if self.bundle.client_certificate_pem is None
                    else (config.badge.bundle / TLS_CERT_FILE, config.badge.bundle / TLS_KEY_FILE)
                ),
            )
        self.control = ControlServer(
            config.badge.control_socket, {"press": self.press, "status": self.status}
        )
        self._button: AlertButton | None = None

    def _battery_status(self) -> dict[str, Any]:
        reading = self.battery.latest()
        return {
            "gauge": self.config.battery.gauge,
            "percent": None if reading is None else reading.percent,
            "millivolts": None if reading is None else reading.millivolts,
            "rate_millipercent_per_hour": (
                None if reading is None else reading.rate_millipercent_per_hour
            ),
        }

    def _battery_percent(self) -> int | None:
        reading = self.battery.latest()
        return None if reading is None else reading.percent

    def _segment_ready(self, segment: EncodedSegment) -> None:
        # never blocks: a full queue drops the segment, counted and declared in the next header
        self.sealer.submit(segment)

    def _segment_stored(self, stored: StoredSegment) -> None:
        """A segment is sealed into the ring: it may close the incident; while one is open
        the uplink sends it now (the pre-roll went at the press)."""
        self.recorder.segment_stored(stored)
        if self.uplink is not None and self.recorder.open_incident is not None:
            self.uplink.wake()

    def _recording_changed(self, recording: bool) -> None:
        if self._mute is not None:
            self._mute.recording(recording)
        if self._signs is not None:
            self._signs.recording(recording)
        if not recording and self.uplink is not None:
            self.uplink.wake()  # an incident closed: its record and segments are queued

    def _sealer_error(self, error: Exception) -> None:
        if isinstance(error, StorageFullError):
            self._storage_full = True
            log.error("STORAGE FULL: pinned incident footage fills the ring: %s", error)
        else:
            log.error("sealing failed: %s", error)

    def press(self) -> dict[str, Any]:
        """A press from the button or the control socket."""
        outcome = self.recorder.press()
        if self.uplink is not None:
            self.uplink.wake()  # the alert is in the outbox: send it now
        return {
            "incident": outcome.incident_id,
            "opened": outcome.opened,
            "post_roll_until_wall_ns": outcome.post_roll_until_wall_ns,
            "pre_roll": list(outcome.pre_roll) if outcome.pre_roll is not None else None,
        }

    def status(self) -> dict[str, Any]:
        """What ``badge status`` shows."""
        ring = self.ring.status()
        sealer = self.sealer.stats
        capture = self.capture.stats if self.capture is not None else None
        incident = self.recorder.open_incident
        return {
            "badge": self.bundle.identity.badge_id,
            "boot": self.ring.boot,
            "recording_incident": incident.incident_id if incident else None,
            "incidents_closed": self.recorder.closed_count,
            "ring": {
                "segments": ring.segments,
                "bytes": ring.bytes_used,
                "pinned_segments": ring.pinned_segments,
                "free_bytes": ring.free_bytes,
                "full": ring.full or self._storage_full,
            },
            "sealer": {
                "sealed": sealer.sealed,
                "dropped_segments": sealer.dropped_segments,
                "dropped_frames": sealer.dropped_frames,
                "queue_depth": sealer.queue_depth,
                "last_error": sealer.last_error,
            },
            "capture": {
                "frames_dropped": capture.frames_dropped if capture else 0,
                "segments_emitted": capture.segments_emitted if capture else 0,
            },
            "outbox_pending": len(self.outbox.pending()),
            "battery": self._battery_status(),
            "uplink": (
                {"enabled": True, **self.uplink.stats.to_dict()}
                if self.uplink is not None
                else {"enabled": False}
            ),
        }

    def heartbeat(self) -> Heartbeat:
        """The heartbeat the uplink signs and sends: health, storage, ring and both clocks."""
        capture = self.capture.stats if self.capture is not None else None
        return read_heartbeat(
            self.bundle.identity.badge_id,
            self.ring,
            self.outbox,
            read_health(self.battery),
            dropped_frames=self.sealer.stats.dropped_frames
            + (capture.frames_dropped if capture is not None else 0),
            recording=self.recorder.open_incident is not None,
        )

    def start(self) -> None:
        """Open the camera and microphone and start every thread."""
        capture = self.config.capture
        audio = open_audio(capture)
        if audio is not None and not capture.pre_roll_audio:
            self._mute = PreRollMute(audio)
            self._mute.recording(self.recorder.open_incident is not None)
            audio = self._mute
        self.capture = CaptureLoop(
            open_video(capture, self.bundle.identity.badge_id),
            audio,
            CaptureSettings(segment_seconds=capture.segment_seconds),
            self._segment_ready,
        )
        self.battery.start()
        self.sealer.start()
        self.capture.start()
        if self.uplink is not None:
            self.uplink.start()
        self.control.start()
        self._start_button()
        log.info("badge %s recording (boot %d)", self.bundle.identity.badge_id, self.ring.boot)

    def _start_button(self) -> None:
        button = self.config.button
        if button.pin is None:
            return
        try:
            self._button = AlertButton(
                button.pin, self.press, bounce_ms=button.bounce_ms, pin_factory=self._pin_factory
            )
            if button.led_pin is not None or button.buzzer_pin is not None:
                self._signs = RecordingSigns(
                    button.led_pin, button.buzzer_pin, pin_factory=self._pin_factory
                )
        except BadgeError as error:
            log.warning("%s; presses come only from 'badge press'", error)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT or a capture failure; return the exit status."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        self.start()
        try:
            sd_notify("READY=1")
            failed = self._supervise()
        finally:  # whatever happens while running, everything is stopped and flushed
            sd_notify("STOPPING=1")
            self.stop()
        return 1 if failed else 0

    def _supervise(self) -> bool:
        """Feed the watchdog until asked to stop (False) or capture fails (True)."""
        interval = min(watchdog_interval_s() or 1.0, 1.0)
        while not self._stop.wait(interval):
            if self.capture is not None and not self.capture.running:
                log.error("capture stopped: %s", self.capture.failure)
                return True
            sd_notify("WATCHDOG=1")
        return False

    def stop(self) -> None:
        """Finish the current segment, seal what is queued, release everything."""
        if self.capture is not None:
            self.capture.stop()
        self.sealer.stop(timeout=30)
        self.control.stop()
        for device in (self._button, self._signs):
            if device is not None:
                device.close()
        if self.uplink is not None:
            self.uplink.stop()
        self.battery.stop()
        self.outbox.close()
        self.receipts.close()
        log.info("badge stopped cleanly")
