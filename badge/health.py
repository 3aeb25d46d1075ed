"""The badge's health as heartbeats carry it: battery, SoC temperature and clock sync state.

The fuel gauge is read on its own thread every ``poll_seconds``; a heartbeat takes the last
reading, so a slow or hung I2C bus never delays one. The temperature (one sysfs file) and
the clock's sync state (one ``adjtimex`` call that changes nothing) are read when asked.
Each is None where the badge has no such sensor or cannot tell.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from badge.errors import GaugeError
from badge.fuel_gauge import BatteryReading, Max17048

log = logging.getLogger(__name__)

SOC_THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")

_MAX_ERROR_SYNCED_US = 16_000_000
"""The kernel's ``maxerror`` grows 500 µs a second from the time source's last update and
stops at 16 s; below that, a source (chrony, timesyncd) is keeping the clock."""
_PLAUSIBLE_MILLICELSIUS = range(-60_000, 150_001)


@dataclass(frozen=True)
class HealthReading:
    """What a heartbeat reports of the badge's health."""

    battery: BatteryReading | None
    soc_temperature_millicelsius: int | None
    clock_synchronised: bool | None


def read_soc_temperature(path: Path = SOC_THERMAL_ZONE) -> int | None:
    """The SoC's temperature in millidegrees Celsius; None where there is no thermal zone."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        value = int(text)
    except ValueError:
        log.debug("%s holds %r, not a temperature", path, text)
        return None
    return value if value in _PLAUSIBLE_MILLICELSIUS else None


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """``struct timex`` from <sys/timex.h> (glibc, Linux)."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("reserved", ctypes.c_int * 11),
    )


@functools.cache
def _adjtimex() -> Callable[..., int]:
    """libc's ``adjtimex``, from the symbols already loaded into the process."""
    function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).adjtimex
    return function


def clock_synchronised() -> bool | None:
    """Whether a time source keeps the wall clock, as ``timedatectl`` decides "System clock
    synchronized": the kernel's maximum error below 16 s. (Not ``STA_UNSYNC``: chrony
    leaves it set unless told ``rtcsync``.) None where the kernel cannot be asked, e.g.
    under systemd's ``ProtectClock=``, which refuses even this read-only call."""
    try:
        adjtimex = _adjtimex()
        timex = _Timex(modes=0)  # modes 0: read only
        state = int(adjtimex(ctypes.byref(timex)))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return synchronised_by_max_error(int(timex.maxerror))


def synchronised_by_max_error(max_error_us: int) -> bool:
    """Whether a kernel maximum error of ``max_error_us`` means a source keeps the clock."""
    return 0 <= max_error_us < _MAX_ERROR_SYNCED_US


class BatteryMonitor:
    """Reads the fuel gauge every ``poll_seconds`` on its own thread; keeps the last reading.

    ``open_gauge`` None means no gauge is fitted. A gauge that cannot be opened or read is
    said once in the log (and again once it answered in between); meanwhile the battery is
    reported as unknown, and the monitor tries again at every poll.
    """

    def __init__(
        self, open_gauge: Callable[[], Max17048] | None, *, poll_seconds: float = 30.0
    ) -> None:
        """Poll the gauge ``open_gauge`` returns (None: no gauge fitted)."""
        self._open = open_gauge
        self._poll_s = poll_seconds
        self._gauge: Max17048 | None = None
        self._latest: BatteryReading | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._complained = False
        self.reads = 0
        """Successful readings so far."""

    @property
    def fitted(self) -> bool:
        """Whether the configuration says a gauge is fitted."""
        return self._open is not None

    def latest(self) -> BatteryReading | None:
        """The last reading, None before the first or after a failed one."""
        with self._lock:
            return self._latest

    def poll(self) -> BatteryReading | None:
        """Read the gauge once now (the thread calls this); None if it cannot be read."""
        if self._open is None:
            return None
        reading: BatteryReading | None = None
        try:
            if self._gauge is None:
                self._gauge = self._open()
            reading = self._gauge.read()
        except GaugeError as error:
            if not self._complained:
                log.warning("battery unknown: %s", error)
                self._complained = True
            self._close_gauge()
        else:
            if self._complained:
                log.info("fuel gauge answers again: %d %%", reading.percent)
            self._complained = False
            self.reads += 1
        with self._lock:
            self._latest = reading
        return reading

    def _close_gauge(self) -> None:
        if self._gauge is not None:
            with contextlib.suppress(OSError):
                self._gauge.close()
            self._gauge = None

    def start(self) -> None:
        """Start polling (nothing to do where no gauge is fitted)."""
        if self._open is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="battery", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(self._poll_s):
                return

    def stop(self) -> None:
        """Stop polling and release the bus."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close_gauge()


def read_health(
    battery: BatteryMonitor | None, thermal_zone: Path = SOC_THERMAL_ZONE
) -> HealthReading:
    """The badge's health now: the battery's last reading (None: no gauge), temperature and
    clock read now."""
    return HealthReading(
        battery=None if battery is None else battery.latest(),
        soc_temperature_millicelsius=read_soc_temperature(thermal_zone),
        clock_synchronised=clock_synchronised(),
    )
