"""Smoke tests of the benchmarks on short, small runs, and the JSON report."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest

from bench import capture, ingest, seal_latency
from bench import verify as bench_verify
from bench.__main__ import BENCHMARKS, main
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
    """Three seconds of real-time 320x240 video through the real pipeline."""
    return capture.run(seconds=3.0, resolutions=((320, 240),))


def test_capture_is_registered() -> None:
    assert BENCHMARKS["capture"] is capture.run


def test_capture_reports_dropped_frames_cpu_and_memory(figures: list[Figure]) -> None:
    assert [figure.name for figure in figures] == [
        "capture-240p30-dropped",
        "capture-240p30-cpu",
        "capture-240p30-rss",
    ]
    for figure in figures:
        assert all(math.isfinite(x) for x in (figure.value, figure.limit_value, figure.ratio))
        assert figure.note
    dropped, cpu, rss = figures
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


def test_seal_latency_reports_the_receipt_and_the_floor_against_one_raw_transfer() -> None:
    by_name = {figure.name: figure for figure in seal_latency.run(rounds=1)}
    assert set(by_name) == {"seal-latency", "seal-latency-floor"}
    gateway, floor = by_name["seal-latency"], by_name["seal-latency-floor"]
    assert gateway.limit_value == floor.limit_value > 0
    for figure in (gateway, floor):
        assert figure.unit == "s" and figure.value > 0
        assert figure.ratio == pytest.approx(figure.value / figure.limit_value)
    assert f"{gateway.value / floor.value:.2f}x the floor" in gateway.note
