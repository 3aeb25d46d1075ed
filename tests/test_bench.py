"""Smoke tests of the benchmarks on short, small runs, and the JSON report."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bench import backup as bench_backup
from bench import capture, ingest, seal_latency, watch
from bench import verify as bench_verify
from bench.__main__ import BENCHMARKS, main
from bench.radio import RadioLink, RadioLinkError
from bench.report import Figure

REQUIRED_KEYS: dict[str, type] = {
    "name": str,
    "value": float,
    "unit": str,
    "limit_value": float,
    "ratio": float,
    "goal": str,
}


@pytest.fixture(scope="module")
def figures() -> list[Figure]:
    """Three seconds of real-time 320x240 video through the real pipeline, alone and busy."""
    return capture.run(seconds=3.0, resolutions=((320, 240),))


def test_capture_is_registered() -> None:
    assert BENCHMARKS["capture"] is capture.run


def test_capture_reports_dropped_frames_cpu_and_memory(figures: list[Figure]) -> None:
    assert [figure.name for figure in figures] == [
        "capture-240p30-dropped",
        "capture-240p30-cpu",
        "capture-240p30-rss",
        "capture-240p30-busy-dropped",
        "capture-240p30-busy-cpu",
        "capture-240p30-busy-rss",
    ]
    for figure in figures:
        assert all(math.isfinite(x) for x in (figure.value, figure.limit_value, figure.ratio))
        assert figure.note
        assert ("busy-loop process" in figure.note) == ("-busy-" in figure.name)
    dropped, cpu, rss = figures[:3]
    assert "OpenCV not loaded" in rss.note and "queues at their fullest" in rss.note
    assert dropped.value >= 0 and dropped.limit_value == 0 and dropped.goal == "== 0"
    assert "frames captured" in dropped.note
    # The limit is timed on segments the run sealed, decrypted and verified from its ring.
    assert cpu.limit_value > 0 and cpu.value > 0
    assert cpu.ratio == pytest.approx(cpu.value / cpu.limit_value)
    assert "libx264" in cpu.note or "h264_v4l2m2m" in cpu.note
    assert rss.limit_value == capture.RSS_LIMIT_MB and rss.value > 0
    assert rss.ratio == pytest.approx(rss.value / rss.limit_value)


def test_json_report_has_the_six_keys_and_an_optional_note(
    figures: list[Figure], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(BENCHMARKS, "capture", lambda: figures)
    assert main(["capture", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(figures)
    for line in lines:
        fields = json.loads(line)
        assert set(REQUIRED_KEYS) <= set(fields) <= {*REQUIRED_KEYS, "note"}
        for key, kind in REQUIRED_KEYS.items():
            assert isinstance(fields[key], kind), (key, fields[key])
        assert isinstance(fields.get("note", ""), str)


def test_json_report_leaves_out_an_empty_note() -> None:
    figure = Figure("x", 1.0, "MB/s", 2.0, 0.5, ">= 0.9")
    assert set(json.loads(figure.as_json())) == set(REQUIRED_KEYS)


def test_verify_benchmark_exports_times_and_cleans_up_a_small_package() -> None:
    assert BENCHMARKS["verify"] is bench_verify.run
    before = set(Path(tempfile.gettempdir()).glob("bench-verify-*"))
    (figure,) = bench_verify.run(segments=3, segment_bytes=4096, rounds=1)
    assert set(Path(tempfile.gettempdir()).glob("bench-verify-*")) == before
    assert (figure.name, figure.unit) == ("verify", "MB/s")
    assert figure.value > 0 and figure.limit_value > 0
    assert figure.ratio == pytest.approx(figure.value / figure.limit_value)
    assert "3 segments of 4096 random bytes" in figure.note and "no derived MP4" in figure.note


def test_backup_benchmark_backs_up_a_small_gateway_and_cleans_up() -> None:
    assert BENCHMARKS["backup"] is bench_backup.run
    before = set(Path(tempfile.gettempdir()).glob("bench-backup-*"))
    (figure,) = bench_backup.run(segments=3, segment_bytes=4096, rounds=1)
    assert set(Path(tempfile.gettempdir()).glob("bench-backup-*")) == before
    assert (figure.name, figure.unit) == ("backup throughput", "MB/s")
    assert figure.value > 0 and figure.limit_value > 0
    assert figure.ratio == pytest.approx(figure.value / figure.limit_value)
    assert "3 segments of 4096 bytes" in figure.note


def test_ingest_reports_the_gateway_and_the_floor_against_one_raw_limit() -> None:
    """A short real run: gateway run, the broker, the raw and the durable receivers."""
    by_name = {figure.name: figure for figure in ingest.run(rounds=1, segments=2)}
    assert set(by_name) == {"ingest", "ingest-floor"}
    gateway, floor = by_name["ingest"], by_name["ingest-floor"]
    assert gateway.limit_value == floor.limit_value > 0  # the same raw run for both
    for figure in (gateway, floor):
        assert figure.unit == "MB/s" and figure.value > 0
        assert figure.ratio == pytest.approx(figure.value / figure.limit_value)
    assert f"{gateway.value / floor.value:.3f} of the floor" in gateway.note


@pytest.mark.slow
def test_watch_times_the_first_pre_roll_frame_beside_the_alert_of_the_same_run() -> None:
    """One press with a second badge connected: the officer's Chromium plays the pre-roll."""
    assert BENCHMARKS["watch"] is watch.run
    by_name = {figure.name: figure for figure in watch.run(presses=1, badges=2)}
    assert set(by_name) == {"watch-p50", "watch-p99"}
    for figure in by_name.values():
        assert figure.unit == "ms" and figure.limit_value > 0
        # the footage plays only after its alert was on the screen
        assert figure.value > figure.limit_value
        assert figure.ratio == pytest.approx(figure.value / figure.limit_value)
        assert "p99 < 2000 ms" in figure.goal and "1 presses, 2 badges" in figure.note


def test_seal_latency_reports_the_receipt_and_the_floor_against_one_raw_transfer() -> None:
    by_name = {figure.name: figure for figure in seal_latency.run(rounds=1)}
    assert set(by_name) == {"seal-latency", "seal-latency-floor"}
    gateway, floor = by_name["seal-latency"], by_name["seal-latency-floor"]
    assert gateway.limit_value == floor.limit_value > 0
    for figure in (gateway, floor):
        assert figure.unit == "s" and figure.value > 0
        assert figure.ratio == pytest.approx(figure.value / figure.limit_value)
    assert f"{gateway.value / floor.value:.2f}x the floor" in gateway.note


def test_the_radio_link_holds_a_stream_to_its_rate_and_leaves_nothing_behind() -> None:
    if os.geteuid() != 0:
        pytest.skip("an emulated radio link needs root")
    before = _namespaces()
    received: list[int] = []
    with RadioLink(40) as link:
        server = socket.create_server((link.hospital_address, 0))
        server.settimeout(30)
        port = server.getsockname()[1]

        def receive() -> None:
            accepted, _ = server.accept()
            with accepted:
                while data := accepted.recv(1 << 16):
                    received.append(len(data))

        reader = threading.Thread(target=receive)
        reader.start()
        client = link.inside(lambda: socket.create_connection((link.hospital_address, port), 30))
        assert client.getsockname()[0] == link.badge_address  # it left through the link
        started = time.monotonic()
        with client, server:
            client.sendall(bytes(2_000_000))
            client.shutdown(socket.SHUT_WR)
            reader.join(30)
        mbit_per_s = sum(received) * 8 / 1e6 / (time.monotonic() - started)
    assert sum(received) == 2_000_000
    assert mbit_per_s < 40 * 1.3  # held to the link (a 256 KiB burst may pass at once)
    assert _namespaces() == before


def test_seal_radio_reports_the_receipt_and_the_floor_over_the_link() -> None:
    if os.geteuid() != 0:
        pytest.skip("an emulated radio link needs root")
    before = _namespaces()
    by_name = {f.name: f for f in seal_latency.run_over_radio(rounds=1, rate_mbit=400)}
    assert set(by_name) == {"seal-radio", "seal-radio-floor"}
    gateway, floor = by_name["seal-radio"], by_name["seal-radio-floor"]
    assert gateway.limit_value == floor.limit_value >= 30e6 * 8 / 400e6  # no faster than 400
    assert "emulated 400 Mbit/s radio link" in gateway.note
    assert gateway.ratio == pytest.approx(gateway.value / gateway.limit_value)
    assert _namespaces() == before


def test_seal_radio_alone_without_a_link_says_why_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused() -> list[Figure]:
        raise RadioLinkError("an emulated radio link needs root and iproute2 (ip, tc)")

    monkeypatch.setitem(BENCHMARKS, "seal-radio", refused)
    assert main(["seal-radio"]) == 2
    assert "seal-radio: not run: an emulated radio link needs root" in capsys.readouterr().err


def _namespaces() -> str:
    listed = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True)
    return listed.stdout
