"""The battery fuel gauge: a Maxim MAX17048 read over I2C through ``smbus2``.

The MAX17048 answers at 7-bit address 0x36. Every register is 16 bits, sent most significant
byte first. An SMBus "read word" takes the first byte on the wire as the low byte, so
``read_word_data`` returns each register byte-swapped; :func:`register_value` swaps it back.
``read_i2c_block_data`` returns the bytes in wire order (MSB, LSB).

Registers read (datasheet, "Register Summary"):

========  ========  ==========================================================
VCELL     0x02      cell voltage, 78.125 µV per bit
SOC       0x04      state of charge, 1/256 % per bit (high byte = whole percent)
VERSION   0x08      production version, 0x001X for the MAX17048/MAX17049
CRATE     0x16      charge or discharge rate, signed, 0.208 % per hour per bit
========  ========  ==========================================================

Nothing is written to the chip: its ModelGauge algorithm needs no set-up to report these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from badge.errors import GaugeError

ADDRESS = 0x36
VCELL = 0x02
SOC = 0x04
VERSION = 0x08
CRATE = 0x16

_VERSION_FAMILY_MASK = 0xFFF0
_VERSION_FAMILY = 0x0010
_NANOVOLTS_PER_BIT = 78_125  # 78.125 µV
_CRATE_MILLIPERCENT_PER_HOUR = 208  # 0.208 %/h per bit


class SMBusLike(Protocol):
    """The part of ``smbus2.SMBus`` the gauge uses."""

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        """One SMBus word read: the first byte on the wire is the low byte."""
        ...

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]:
        """``length`` bytes from ``register`` on, in wire order."""
        ...

    def close(self) -> None:
        """Release the bus device."""
        ...


@dataclass(frozen=True)
class BatteryReading:
    """One reading of the gauge."""

    percent: int
    """State of charge, 0-100 (the chip may say a little over 100 when full; kept at 100)."""
    millivolts: int
    """Cell voltage."""
    rate_millipercent_per_hour: int
    """Positive while charging, negative while discharging (0.208 %/h per chip step)."""


def register_value(word: int) -> int:
    """The register's value from an SMBus word read (which is byte-swapped)."""
    if not 0 <= word <= 0xFFFF:
        raise GaugeError(f"an SMBus word read returned {word}, not a 16-bit value")
    return ((word & 0xFF) << 8) | (word >> 8)


def decode_vcell(value: int) -> int:
    """VCELL in millivolts."""
    return value * _NANOVOLTS_PER_BIT // 1_000_000


def decode_soc(value: int) -> int:
    """SOC in whole percent, rounded, at most 100."""
    return min(100, (value + 128) >> 8)


def decode_crate(value: int) -> int:
    """CRATE (two's complement) in thousandths of a percent per hour."""
    signed = value - 0x10000 if value & 0x8000 else value
    return signed * _CRATE_MILLIPERCENT_PER_HOUR


class Max17048:
    """A MAX17048 on an open SMBus."""

    def __init__(self, bus: SMBusLike, *, address: int = ADDRESS, where: str = "I2C") -> None:
        """Use ``bus``; ``where`` names it in errors (e.g. ``/dev/i2c-1``)."""
        self._bus = bus
        self._address = address
        self._where = f"{where} address {address:#04x}"

    def version(self) -> int:
        """The VERSION register, read as a two-byte block (wire order, MSB first)."""
        try:
            data = self._bus.read_i2c_block_data(self._address, VERSION, 2)
        except OSError as error:
            raise GaugeError(f"no fuel gauge answers at {self._where}: {error}") from None
        if len(data) != 2 or not all(0 <= byte <= 0xFF for byte in data):
            raise GaugeError(f"{self._where}: VERSION read returned {data!r}, not two bytes")
        return (data[0] << 8) | data[1]

    def check(self) -> int:
        """Confirm the chip is a MAX17048/49; return its version."""
        version = self.version()
        if version & _VERSION_FAMILY_MASK != _VERSION_FAMILY:
            raise GaugeError(
                f"the device at {self._where} is not a MAX17048 (VERSION {version:#06x}, "
                f"expected 0x001X)"
            )
        return version

    def _register(self, register: int) -> int:
        try:
            return register_value(self._bus.read_word_data(self._address, register))
        except OSError as error:
            raise GaugeError(
                f"reading register {register:#04x} at {self._where} failed: {error}"
            ) from None

    def read(self) -> BatteryReading:
        """Read charge, voltage and rate now."""
        return BatteryReading(
            percent=decode_soc(self._register(SOC)),
            millivolts=decode_vcell(self._register(VCELL)),
            rate_millipercent_per_hour=decode_crate(self._register(CRATE)),
        )

    def close(self) -> None:
        """Release the bus."""
        self._bus.close()


def _smbus2(bus: int) -> SMBusLike:
    from smbus2 import SMBus  # noqa: PLC0415 - only a badge with a gauge needs it

    return SMBus(bus)


def open_max17048(
    bus: int, *, address: int = ADDRESS, smbus: Callable[[int], SMBusLike] | None = None
) -> Max17048:
    """Open ``/dev/i2c-<bus>`` and check a MAX17048 answers at ``address``."""
    where = f"/dev/i2c-{bus}"
    try:
        device = (smbus or _smbus2)(bus)
    except ImportError:
        raise GaugeError("smbus2 is not installed (pip install 'medbadge[pi]')") from None
    except OSError as error:
        raise GaugeError(f"cannot open {where} for the fuel gauge: {error}") from None
    gauge = Max17048(device, address=address, where=where)
    try:
        gauge.check()
    except GaugeError:
        gauge.close()
        raise
    return gauge
