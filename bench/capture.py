"""Real-time capture on the badge: dropped frames, CPU outside the H.264 encoder, peak memory.

For each resolution the real pipeline runs in a child process of its own, as the daemon
wires it: ``SyntheticCamera(realtime=True)`` and ``SyntheticMicrophone`` -> ``CaptureLoop``
(default ``CaptureSettings``, so the same encoder choice as the daemon) -> ``Sealer`` ->
``Ring`` in a temporary directory with a 60 s pre-roll. The badge identity and the custodian
key are generated in the run and handed to the child as key files, as enrolment would.

How the CPU outside the encoder is measured. The child's whole CPU over the recording
(``getrusage(RUSAGE_SELF)`` from just before ``CaptureLoop.start()`` to after the sealer has
stored the last segment: every thread, including those that have ended) minus the CPU of the
H.264 encoder, which is counted three ways and all inside the same process:

- opening it: thread CPU time around ``VideoEncoder.__init__``;
- every call into the codec: thread CPU time around ``VideoEncoder._run`` (the
  ``avcodec`` encode call and the packets it returns), on the capture thread;
- the codec's own threads: libx264 starts its worker threads when it opens, so the OS
  threads that appear during ``VideoEncoder.__init__`` and are not Python threads are
  the encoder's; their CPU is read from ``/proc/self/task/<tid>/stat`` after the run (the
  encoder objects are kept alive so these threads are still there to be read).

The BGR-to-I420 colour conversion in ``VideoEncoder.encode`` runs before ``_run`` and is
counted as the badge's, not the encoder's: any H.264 encoder fed OpenCV frames needs it,
the Pi's hardware one included. So the figure leans against us, never for us. To do this the
child swaps ``badge.capture.VideoEncoder`` for a subclass that only adds the clocks above.

Each resolution runs twice: on its own, and "busy", with a busy-loop child process pinned to
the same cores as the pipeline child for the whole recording, because a badge's CPU is never
idle (the radio, the OS, the Pi 5's software encoder) and the queues between the pipeline's
threads fill exactly when the encoder lags. Peak memory is held to the same goal in both.

The limit for that figure is the cost of the sealing primitives alone (SHA-256 of the
plaintext, ChaCha20-Poly1305 over it, SHA-256 of the ciphertext), timed in this process
after the run on the very segments the run produced: decrypted from the ring with the
custodian key (which also proves they were sealed correctly).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import ClassVar

import av
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from badge import capture as capture_loop
from badge.encoder import AUTO_VIDEO_CODEC, VideoEncoder, VideoPacket
from badge.media import EncodedSegment
from badge.ring import Ring
from badge.sealer import Sealer
from badge.sources.audio import SyntheticMicrophone
from badge.sources.synthetic import SyntheticCamera
from bench.report import Figure
from evidence.keys import BadgeIdentity, CustodianPrivateKey, CustodianPublicKey, SigningKey
from evidence.segment import SealedSegment

SECONDS = 60.0
"""Seconds of real-time video recorded at each resolution."""
RESOLUTIONS: tuple[tuple[int, int], ...] = ((1280, 720), (1920, 1080))
FPS = 30
PRE_ROLL_SECONDS = 60
RING_MAX_BYTES = 4 * 10**9
"""Far above what the pre-roll holds: the ring is bounded by time here, never by bytes."""
BUSY_PROCESSES = 1
"""Busy-loop processes beside the pipeline in the "busy" runs."""
RSS_LIMIT_MB = 150.0
"""Peak memory goal: leaves room on a 512 MB Raspberry Pi Zero 2 W."""
PRIMITIVE_ROUNDS = 5
BADGE_ID = "bench-badge"
_CHILD_GRACE_SECONDS = 180.0
"""Time beyond the recording allowed for the child to start, stop and report."""
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_MB = 1_000_000


@dataclass(frozen=True)
class PipelineRun:
    """What the pipeline child measured for one resolution."""

    video_seconds: float
    frames_captured: int
    frames_encoded: int
    capture_dropped_frames: int
    sealer_dropped_frames: int
    sealer_dropped_segments: int
    sealer_error: str | None
    audio_blocks_dropped: int
    segments_sealed: int
    cpu_seconds: float
    """The whole child's CPU over the recording, every thread."""
    encoder_seconds: float
    """CPU of the H.264 encoder: opening, calls into it, its own threads."""
    encoder_worker_seconds: float
    """The part of ``encoder_seconds`` spent on the encoder's own threads."""
    threads: tuple[tuple[str, float], ...]
    """CPU seconds by thread until ``stop()``, outside the encoder (for the note)."""
    peak_rss_bytes: int
    baseline_rss_bytes: int
    """Peak resident set before the pipeline started: the interpreter and its libraries."""
    video_codec: str
    failure: str | None
    frame_queue_peak_bytes: int
    """The most bytes of frames waiting for the encoder at once."""
    sealer_queue_peak_bytes: int
    """The most bytes of segments waiting for the sealer at once."""
    opencv_loaded: bool
    """Whether OpenCV was imported into the pipeline process (it should not be)."""


@dataclass(frozen=True)
class PrimitiveCost:
    """The sealing primitives timed on the segments a run left in its ring."""

    cpu_seconds: float
    """Median CPU seconds of one pass over all the segments."""
    video_seconds: float
    segments: int
    megabytes: float


def run(
    seconds: float = SECONDS,
    resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS,
    *,
    busy_processes: int = BUSY_PROCESSES,
) -> list[Figure]:
    """Record ``seconds`` of real-time video at each resolution, alone and then beside
    ``busy_processes`` busy loops on the same cores; three figures per run."""
    figures: list[Figure] = []
    for width, height in resolutions:
        for busy in (0, busy_processes):
            with tempfile.TemporaryDirectory(prefix="bench-capture-") as temp:
                figures.extend(_measure(width, height, seconds, Path(temp), busy))
    return figures


def _measure(
    width: int, height: int, seconds: float, directory: Path, busy: int = 0
) -> list[Figure]:
    key = SigningKey.generate()
    identity = BadgeIdentity(BADGE_ID, key)
    custodian = CustodianPrivateKey.generate()
    key.save(directory / "badge.key")
    custodian.public_key.save(directory / "custodian.pub")
    cores = sorted(os.sched_getaffinity(0))
    spinners = [_start_spinner(cores, seconds + _CHILD_GRACE_SECONDS) for _ in range(busy)]
    try:
        recorded = _run_child(width, height, seconds, directory, cores if busy else None)
    finally:
        for spinner in spinners:
            spinner.terminate()
            spinner.join(10)
    primitives = _primitive_cost(directory / "ring", identity, custodian)
    prefix = f"capture-{height}p{FPS}" + ("-busy" if busy else "")
    condition = (
        f"beside {busy} busy-loop process(es) pinned with it to cores {cores}" if busy else ""
    )
    return [
        _dropped_figure(prefix, recorded, condition),
        _cpu_figure(prefix, recorded, primitives, condition),
        _rss_figure(prefix, recorded, condition),
    ]


def _start_spinner(cores: list[int], seconds: float) -> multiprocessing.process.BaseProcess:
    """A child process that keeps one core busy on ``cores`` for at most ``seconds``."""
    spinner = multiprocessing.get_context("spawn").Process(
        target=_spin, args=(cores, seconds), name="busy-loop", daemon=True
    )
    spinner.start()
    return spinner


def _spin(cores: list[int], seconds: float) -> None:
    """Burn CPU on ``cores`` until ``seconds`` have passed (or the parent ends it)."""
    os.sched_setaffinity(0, cores)
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        for _ in range(10_000):
            count += 1


# -- figures -------------------------------------------------------------------------------


def _dropped_figure(prefix: str, recorded: PipelineRun, condition: str = "") -> Figure:
    dropped = recorded.capture_dropped_frames + recorded.sealer_dropped_frames
    return Figure(
        name=f"{prefix}-dropped",
        value=float(dropped),
        unit="frames",
        limit_value=0.0,
        ratio=dropped / max(1, recorded.frames_captured),
        goal="== 0",
        note=(
            f"ratio = dropped / captured; {recorded.frames_captured} frames captured in "
            f"{recorded.video_seconds:.1f} s of video, {recorded.frames_encoded} encoded "
            f"({recorded.video_codec}), {recorded.segments_sealed} segments sealed; "
            f"{recorded.capture_dropped_frames} frames dropped before sealing, "
            f"{recorded.sealer_dropped_frames} in {recorded.sealer_dropped_segments} "
            f"segments the sealer dropped; {recorded.audio_blocks_dropped} audio blocks dropped"
            + ("" if recorded.sealer_error is None else f"; sealer: {recorded.sealer_error}")
            + (f"; {condition}" if condition else "")
        ),
    )


def _cpu_figure(
    prefix: str, recorded: PipelineRun, primitives: PrimitiveCost, condition: str = ""
) -> Figure:
    per_second = 1000.0 / recorded.video_seconds  # CPU ms per video second
    outside = (recorded.cpu_seconds - recorded.encoder_seconds) * per_second
    limit = primitives.cpu_seconds * 1000.0 / primitives.video_seconds
    by_thread = ", ".join(f"{name} {cpu * per_second:.1f}" for name, cpu in recorded.threads)
    return Figure(
        name=f"{prefix}-cpu",
        value=outside,
        unit="CPU ms per video s",
        limit_value=limit,
        ratio=outside / limit,
        goal="report",
        note=(
            f"whole pipeline process minus the H.264 encoder ({recorded.video_codec}: calls "
            f"into it, its opening and its own threads; colour conversion counted as ours); "
            f"with the encoder {recorded.cpu_seconds * per_second:.1f} ms/s, encoder alone "
            f"{recorded.encoder_seconds * per_second:.1f} ms/s (its threads "
            f"{recorded.encoder_worker_seconds * per_second:.1f}); by thread outside the "
            f"encoder until stop, ms/s: {by_thread}; limit = SHA-256 x2 + ChaCha20-Poly1305 on the "
            f"{primitives.segments} segments produced ({primitives.megabytes:.1f} MB, "
            f"{primitives.video_seconds:.1f} s of video); the sealer alone is held to "
            f"<= 1.25 x its primitives by `bench seal`"
            + (f"; {condition}" if condition else "")
        ),
    )


def _rss_figure(prefix: str, recorded: PipelineRun, condition: str = "") -> Figure:
    peak_mb = recorded.peak_rss_bytes / _MB
    return Figure(
        name=f"{prefix}-rss",
        value=peak_mb,
        unit="MB",
        limit_value=RSS_LIMIT_MB,
        ratio=peak_mb / RSS_LIMIT_MB,
        goal="< 1.0",
        note=(
            f"peak resident set (VmHWM) of the pipeline process; "
            f"{recorded.baseline_rss_bytes / _MB:.1f} MB of it before the pipeline started "
            f"(Python, numpy, PyAV, cryptography loaded; OpenCV "
            f"{'loaded' if recorded.opencv_loaded else 'not loaded'}); queues at their "
            f"fullest: frames {recorded.frame_queue_peak_bytes / _MB:.1f} MB, segments for "
            f"the sealer {recorded.sealer_queue_peak_bytes / _MB:.1f} MB; MB = 10^6 bytes"
            + (f"; {condition}" if condition else "")
        ),
    )


# -- the sealing primitives on the segments produced ---------------------------------------


def _primitive_cost(
    ring: Path, identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> PrimitiveCost:
    plaintexts: list[bytes] = []
    video_ns = 0
    badge_key = identity.signing_key.public_key
    for path in sorted((ring / "segments").glob("*.mbseal")):
        sealed = SealedSegment.read(path)
        sealed.verify(badge_key)
        plaintexts.append(sealed.open(custodian))
        video_ns += sealed.header.mono_end_ns - sealed.header.mono_start_ns
    if not plaintexts or video_ns <= 0:
        raise RuntimeError(f"the capture run left no sealed segments in {ring}")
    aead = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())
    nonce = os.urandom(12)

    def one_pass() -> float:
        start = time.thread_time()
        for plaintext in plaintexts:
            hashlib.sha256(plaintext).digest()
            ciphertext = aead.encrypt(nonce, plaintext, None)
            hashlib.sha256(ciphertext).digest()
        return time.thread_time() - start

    one_pass()  # warm caches
    return PrimitiveCost(
        cpu_seconds=statistics.median(one_pass() for _ in range(PRIMITIVE_ROUNDS)),
        video_seconds=video_ns / 1e9,
        segments=len(plaintexts),
        megabytes=sum(len(plaintext) for plaintext in plaintexts) / _MB,
    )


# -- the pipeline child --------------------------------------------------------------------


def _run_child(
    width: int, height: int, seconds: float, directory: Path, cores: list[int] | None = None
) -> PipelineRun:
    context = multiprocessing.get_context("spawn")  # a fresh process: its own peak memory
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_record_in_child,
        args=((width, height), seconds, str(directory), sender, cores),
        name=f"capture-{width}x{height}",
    )
    child.start()
    sender.close()
    try:
        if not receiver.poll(seconds + _CHILD_GRACE_SECONDS):
            raise RuntimeError(
                f"the {width}x{height} capture child reported nothing within "
                f"{seconds + _CHILD_GRACE_SECONDS:.0f} s"
            )
        result = receiver.recv()
    except EOFError:
        result = None
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
            child.join()
    if not isinstance(result, PipelineRun):
        raise RuntimeError(
            f"the {width}x{height} capture child failed (exit code {child.exitcode}): {result}"
        )
    if result.failure is not None:
        raise RuntimeError(f"the {width}x{height} capture failed: {result.failure}")
    return result


def _record_in_child(
    size: tuple[int, int],
    seconds: float,
    directory: str,
    sender: Connection,
    cores: list[int] | None = None,
) -> None:
    """The child's entry point: record (on ``cores`` when given), then send a PipelineRun
    (or the error's text)."""
    width, height = size
    if cores is not None:
        os.sched_setaffinity(0, cores)
    try:
        sender.send(_record(width, height, seconds, Path(directory)))
    except Exception as error:
        sender.send(f"{type(error).__name__}: {error}")
    finally:
        sender.close()


def _record(width: int, height: int, seconds: float, directory: Path) -> PipelineRun:
    # CaptureLoop.start() opens the encoder by this module-level name: swap in the clocked one.
    setattr(capture_loop, "VideoEncoder", _TimedVideoEncoder)  # noqa: B010
    identity = BadgeIdentity(BADGE_ID, SigningKey.load(directory / "badge.key"))
    custodian = CustodianPublicKey.load(directory / "custodian.pub")
    ring = Ring.open(
        directory / "ring", pre_roll_ns=PRE_ROLL_SECONDS * 10**9, max_bytes=RING_MAX_BYTES
    )
    sealer = Sealer(identity, custodian, ring)
    camera = SyntheticCamera(width, height, FPS, BADGE_ID, realtime=True)

    def segment_ready(segment: EncodedSegment) -> None:
        sealer.submit(segment)  # never blocks, as in the daemon; a drop is counted by the sealer

    loop = capture_loop.CaptureLoop(
        camera, SyntheticMicrophone(realtime=True), capture_loop.CaptureSettings(), segment_ready
    )
    sealer.start()
    baseline_rss = _peak_rss_bytes()
    threads_before = _thread_cpus()
    cpu_start = _process_cpu()
    loop.start()
    time.sleep(seconds)
    threads = _thread_cpu_outside_encoder(threads_before)
    loop.stop(timeout=60)
    sealer.stop(timeout=60)
    cpu = _process_cpu() - cpu_start
    encoders = _TimedVideoEncoder.opened
    workers = sum(_thread_cpu(tid) or 0.0 for enc in encoders for tid in enc.worker_tids)
    calls = sum(enc.call_seconds for enc in encoders)
    stats, sealed = loop.stats, sealer.stats
    return PipelineRun(
        video_seconds=(stats.frames_encoded + stats.frames_dropped) / FPS,
        frames_captured=stats.frames_captured,
        frames_encoded=stats.frames_encoded,
        capture_dropped_frames=stats.frames_dropped,
        sealer_dropped_frames=sealed.dropped_frames,
        sealer_dropped_segments=sealed.dropped_segments,
        sealer_error=sealed.last_error,
        audio_blocks_dropped=stats.audio_blocks_dropped,
        segments_sealed=sealed.sealed,
        cpu_seconds=cpu,
        encoder_seconds=sum(enc.open_seconds for enc in encoders) + calls + workers,
        encoder_worker_seconds=workers,
        threads=threads,
        peak_rss_bytes=_peak_rss_bytes(),
        baseline_rss_bytes=baseline_rss,
        video_codec=encoders[0].codec_name if encoders else "none",
        failure=None if loop.failure is None else str(loop.failure),
        frame_queue_peak_bytes=loop.queue_peak_bytes[0],
        sealer_queue_peak_bytes=sealed.queue_peak_bytes,
        opencv_loaded="cv2" in sys.modules,
    )


class _TimedVideoEncoder(VideoEncoder):
    """The real encoder, with CPU clocks on its opening, its calls into the codec, its threads.

    Every instance stays in ``opened`` so its codec threads live on to be read after the run.
    """

    opened: ClassVar[list[_TimedVideoEncoder]] = []

    def __init__(
        self,
        width: int,
        height: int,
        fps: Fraction,
        segment_seconds: float,
        *,
        codec: str = AUTO_VIDEO_CODEC,
        bitrate: int | None = None,
        preset: str = "ultrafast",
    ) -> None:
        """Open the encoder, noting its CPU and the OS threads the codec started meanwhile."""
        before = _task_ids()
        start = time.thread_time()
        super().__init__(
            width, height, fps, segment_seconds, codec=codec, bitrate=bitrate, preset=preset
        )
        self.open_seconds = time.thread_time() - start
        python = {thread.native_id for thread in threading.enumerate()}
        self.worker_tids = frozenset(_task_ids() - before - python)
        self.call_seconds = 0.0
        _TimedVideoEncoder.opened.append(self)

    def _run(self, picture: av.VideoFrame | None) -> list[VideoPacket]:
        start = time.thread_time()
        try:
            return super()._run(picture)
        finally:
            self.call_seconds += time.thread_time() - start


# -- reading CPU and memory from the kernel ------------------------------------------------


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _task_ids() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/task")}


def _thread_cpu(tid: int) -> float | None:
    """User + system CPU seconds of one thread of this process; None once it has ended."""
    try:
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14, 15)


def _thread_cpus() -> dict[int, float]:
    """CPU seconds so far of every live thread of this process, by OS thread id."""
    cpus = {tid: _thread_cpu(tid) for tid in _task_ids()}
    return {tid: cpu for tid, cpu in cpus.items() if cpu is not None}


def _thread_cpu_outside_encoder(before: dict[int, float]) -> tuple[tuple[str, float], ...]:
    """CPU since ``before`` of each thread outside the encoder, by name.

    Python threads go by their own name, with the encoder's share taken out (its calls on
    the capture thread, its opening on the main thread); other threads outside the encoder
    (OpenCV's and numpy's workers) go together as native helpers.
    """
    encoders = _TimedVideoEncoder.opened
    encoder_tids = {tid for enc in encoders for tid in enc.worker_tids}
    named = {thread.native_id: thread.name for thread in threading.enumerate()}
    cpu: dict[str, float] = {}
    for tid, seconds in _thread_cpus().items():
        if tid not in encoder_tids:
            name = named.get(tid, "native helpers")
            cpu[name] = cpu.get(name, 0.0) + seconds - before.get(tid, 0.0)
    taken = {
        "capture-encode": sum(enc.call_seconds for enc in encoders),
        threading.main_thread().name: sum(enc.open_seconds for enc in encoders),
    }
    for name, encoder_share in taken.items():
        if name in cpu:
            cpu[name] = max(0.0, cpu[name] - encoder_share)
    return tuple(sorted(cpu.items()))


def _peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
