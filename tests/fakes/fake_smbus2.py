"""A stand-in for ``smbus2.SMBus`` with a MAX17048 fuel gauge on the bus.

`FakeSMBus` follows smbus2's API: ``SMBus(bus=None, force=False)`` opens ``/dev/i2c-<bus>``
(FileNotFoundError when that adapter does not exist), ``read_word_data(i2c_addr, register,
force=None)``, ``read_i2c_block_data(i2c_addr, register, length, force=None)`` (ValueError
over 32 bytes, the SMBus block limit), ``close()`` and use as a context manager. A device
that does not acknowledge its address raises OSError 121 (EREMOTEIO), as i2c-dev does.

As on the wire, the chip sends each 16-bit register most significant byte first; a word
read assembles the first byte as the low one (SMBus is little-endian), so it returns the
register byte-swapped, exactly as the kernel's ``I2C_SMBUS_WORD_DATA`` does. Block reads
return bytes in wire order and run on into the next register, as the chip's auto-increment
does.

`FakeMax17048` holds the datasheet's register map with its power-on values; tests set the
battery's state in physical units and the registers follow.
"""

from __future__ import annotations

import errno
from types import TracebackType
from typing import ClassVar

I2C_SMBUS_BLOCK_MAX = 32


class FakeMax17048:
    """The MAX17048's registers (datasheet "Register Summary"), power-on values."""

    def __init__(self, *, version: int = 0x0012) -> None:
        self.registers: dict[int, int] = {
            0x02: 0x0000,  # VCELL
            0x04: 0x0000,  # SOC
            0x06: 0x0000,  # MODE
            0x08: version,  # VERSION
            0x0A: 0x8030,  # HIBRT
            0x0C: 0x971C,  # CONFIG
            0x14: 0x00FF,  # VALRT
            0x16: 0x0000,  # CRATE
            0x18: 0x9600,  # VRESET/ID
            0x1A: 0x0100,  # STATUS
        }
        self.reads = 0

    def set_battery(
        self, *, millivolts: float, percent: float, rate_percent_per_hour: float
    ) -> None:
        """Put the cell in a state; the registers hold it as the chip would encode it."""
        self.registers[0x02] = round(millivolts * 1_000_000 / 78_125) & 0xFFFF
        self.registers[0x04] = round(percent * 256) & 0xFFFF
        self.registers[0x16] = round(rate_percent_per_hour / 0.208) & 0xFFFF

    def wire_bytes(self, register: int, length: int) -> list[int]:
        """``length`` bytes as the chip sends them from ``register`` on (MSB first)."""
        self.reads += 1
        out: list[int] = []
        address = register & ~1
        first_low = register & 1
        while len(out) < length + first_low:
            value = self.registers.get(address, 0xFFFF)  # reserved registers read as 0xFFFF
            out.extend((value >> 8, value & 0xFF))
            address += 2
        return out[first_low : first_low + length]


class FakeSMBus:
    """``smbus2.SMBus`` over the adapters in ``FakeSMBus.adapters``."""

    adapters: ClassVar[dict[int, dict[int, FakeMax17048]]] = {}
    """Bus number -> (7-bit address -> device). A bus not here has no /dev/i2c-N."""

    def __init__(self, bus: int | str | None = None, force: bool = False) -> None:
        self.fd: int | None = None
        self.force = force
        self._number: int | None = None
        if bus is not None:
            self.open(bus)

    def open(self, bus: int | str) -> None:
        """Open ``/dev/i2c-<bus>``."""
        number = bus if isinstance(bus, int) else int(str(bus).rsplit("-", 1)[-1])
        if number not in self.adapters:
            raise FileNotFoundError(
                errno.ENOENT, "No such file or directory", f"/dev/i2c-{number}"
            )
        self._number = number
        self.fd = 3 + number

    def close(self) -> None:
        """Close the adapter."""
        self.fd = None

    def __enter__(self) -> FakeSMBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    def _device(self, i2c_addr: int) -> FakeMax17048:
        if self.fd is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        device = self.adapters.get(self._number or 0, {}).get(i2c_addr)
        if device is None:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")
        return device

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        """SMBus read word: first byte on the wire is the low byte."""
        first, second = self._device(i2c_addr).wire_bytes(register, 2)
        return first | (second << 8)

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]:
        """``length`` bytes in wire order."""
        if length > I2C_SMBUS_BLOCK_MAX:
            raise ValueError(f"Desired block length over {I2C_SMBUS_BLOCK_MAX} bytes")
        return self._device(i2c_addr).wire_bytes(register, length)
