"""The MAX17048 fuel gauge through smbus2's API: register decoding, byte order, absence."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from badge.errors import GaugeError
from badge.fuel_gauge import (
    ADDRESS,
    VCELL,
    Max17048,
    decode_crate,
    decode_soc,
    decode_vcell,
    open_max17048,
    register_value,
)
from badge.health import (
    BatteryMonitor,
    clock_synchronised,
    read_health,
    read_soc_temperature,
    synchronised_by_max_error,
)
from tests.fakes.fake_smbus2 import FakeMax17048, FakeSMBus


@pytest.fixture
def chip() -> Iterator[FakeMax17048]:
    """A MAX17048 on /dev/i2c-1 at 0x36."""
    gauge = FakeMax17048()
    FakeSMBus.adapters = {1: {ADDRESS: gauge}}
    yield gauge
    FakeSMBus.adapters = {}


def test_a_reading_is_the_cell_state_in_physical_units(chip: FakeMax17048) -> None:
    chip.set_battery(millivolts=3_850, percent=76.5, rate_percent_per_hour=-2.08)
    reading = open_max17048(1, smbus=FakeSMBus).read()
    assert reading.millivolts == 3_850  # 49_280 steps of 78.125 µV
    assert reading.percent == 77
    assert reading.rate_millipercent_per_hour == -2_080


def test_word_reads_are_swapped_back_to_the_chips_big_endian_order(chip: FakeMax17048) -> None:
    """SMBus assembles the chip's MSB-first register as a little-endian word."""
    chip.registers[VCELL] = 0xC350  # 50_000 steps: 3.90625 V
    bus = FakeSMBus(1)
    word = bus.read_word_data(ADDRESS, VCELL)
    assert word == 0x50C3
    assert register_value(word) == 0xC350
    assert Max17048(bus).read().millivolts == 3_906


def test_register_decoding_follows_the_datasheet() -> None:
    assert decode_vcell(0xFFFF) == 5_119  # full scale 5.12 V
    assert decode_soc(0x6480) == 100  # 100.5 %: the chip may overshoot; we report 100
    assert decode_soc(0x3280) == 51  # 50.5 % rounds up
    assert decode_soc(0x0000) == 0
    assert decode_crate(0x0001) == 208
    assert decode_crate(0xFFFF) == -208
    assert decode_crate(0x8000) == -32_768 * 208
    with pytest.raises(GaugeError, match="not a 16-bit value"):
        register_value(0x1_0000)


def test_the_version_is_read_as_a_block_in_wire_order(chip: FakeMax17048) -> None:
    gauge = open_max17048(1, smbus=FakeSMBus)
    assert gauge.version() == 0x0012
    # a block read runs on from MODE (0x06) into VERSION (0x08), MSB first
    assert FakeSMBus(1).read_i2c_block_data(ADDRESS, 0x06, 4) == [0, 0, 0x00, 0x12]


def test_another_chip_at_the_address_is_refused(chip: FakeMax17048) -> None:
    chip.registers[0x08] = 0x4030  # not the MAX17048 family
    with pytest.raises(GaugeError, match=r"/dev/i2c-1 address 0x36 is not a MAX17048.*0x4030"):
        open_max17048(1, smbus=FakeSMBus)


def test_no_adapter_and_no_chip_say_which(chip: FakeMax17048) -> None:
    with pytest.raises(GaugeError, match=r"cannot open /dev/i2c-3 .*No such file"):
        open_max17048(3, smbus=FakeSMBus)
    with pytest.raises(GaugeError, match=r"no fuel gauge answers at /dev/i2c-1 address 0x37"):
        open_max17048(1, address=0x37, smbus=FakeSMBus)


def test_the_monitor_reports_unknown_while_the_gauge_fails_and_says_so_once(
    chip: FakeMax17048, caplog: pytest.LogCaptureFixture
) -> None:
    chip.set_battery(millivolts=4_000, percent=90, rate_percent_per_hour=1.0)
    monitor = BatteryMonitor(lambda: open_max17048(1, smbus=FakeSMBus))
    assert monitor.fitted
    first = monitor.poll()
    assert first is not None and first.percent == 90
    FakeSMBus.adapters = {1: {}}  # the gauge comes off the bus
    with caplog.at_level(logging.WARNING, logger="badge.health"):
        assert monitor.poll() is None
        assert monitor.poll() is None
    assert monitor.latest() is None
    assert len([r for r in caplog.records if "battery unknown" in r.message]) == 1
    FakeSMBus.adapters = {1: {ADDRESS: chip}}
    again = monitor.poll()
    assert again is not None and again.millivolts == 4_000
    assert monitor.reads == 2


def test_no_gauge_fitted_is_null_without_a_thread() -> None:
    monitor = BatteryMonitor(None)
    monitor.start()
    assert not monitor.fitted and monitor.poll() is None and monitor.latest() is None
    monitor.stop()


class _HangingBus(FakeSMBus):
    """A bus whose word reads hang until released, like an I2C bus held low."""

    release = threading.Event()

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        self.release.wait(10)
        return super().read_word_data(i2c_addr, register, force)


def test_a_hung_bus_does_not_delay_the_health_a_heartbeat_reads(
    chip: FakeMax17048, tmp_path: Path
) -> None:
    chip.set_battery(millivolts=3_700, percent=40, rate_percent_per_hour=-5)
    monitor = BatteryMonitor(lambda: open_max17048(1, smbus=_HangingBus), poll_seconds=1)
    monitor.start()
    try:
        time.sleep(0.2)  # the monitor's first read is now stuck on the bus
        started = time.monotonic()
        health = read_health(monitor, tmp_path / "absent")
        assert time.monotonic() - started < 0.1
        assert health.battery is None and health.soc_temperature_millicelsius is None
        _HangingBus.release.set()
        deadline = time.monotonic() + 5
        while monitor.latest() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        reading = read_health(monitor, tmp_path / "absent").battery
        assert reading is not None and reading.percent == 40
    finally:
        _HangingBus.release.set()
        monitor.stop()


def test_soc_temperature_reads_the_thermal_zone(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("48312\n")
    assert read_soc_temperature(zone) == 48_312
    zone.write_text("-5000\n")
    assert read_soc_temperature(zone) == -5_000
    zone.write_text("hot\n")
    assert read_soc_temperature(zone) is None
    zone.write_text("999999999\n")  # no SoC runs at a million degrees: a broken sensor
    assert read_soc_temperature(zone) is None
    assert read_soc_temperature(tmp_path / "absent") is None


def test_the_clock_counts_as_synchronised_as_timedatectl_decides() -> None:
    """The kernel's maximum error, not STA_UNSYNC (which chrony leaves set)."""
    assert synchronised_by_max_error(250_000)
    assert synchronised_by_max_error(15_999_999)
    assert not synchronised_by_max_error(16_000_000)  # the kernel's ceiling: no source
    assert not synchronised_by_max_error(-1)
    assert clock_synchronised() in (True, False)  # this kernel answers a read-only adjtimex
