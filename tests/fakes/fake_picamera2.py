"""A stand-in for picamera2 where there is no Pi camera: same names, arguments and threads.

Modelled on picamera2's `Picamera2`, `encoders.H264Encoder` (the V4L2 hardware encoder),
`outputs.Output` and `MappedArray`:

- `FakePicamera2.start()` runs an event-loop thread that, for each frame, builds a completed
  request (buffer in the configured format and stride, `SensorTimestamp` metadata in ns),
  calls `pre_callback(request)`, `post_callback(request)`, then `encoder.encode(name,
  request)` for each running encoder, then releases the request;
- `FakeH264Encoder.encode` acquires the request and queues it (blocking when 16 frames are in
  flight, like the V4L2 output buffers); its own thread encodes with libx264 through PyAV
  (keyframe every `iperiod` frames, SPS/PPS repeated when `repeat`), releases the request and
  calls `output.outputframe(bytes, keyframe, timestamp_us, packet, audio)` from that thread;
- timestamps are microseconds since the first frame the encoder saw, as picamera2's are.

Class attributes tune the fake for tests: `FakePicamera2.realtime` (pace frames like a
sensor, or run as fast as the encoder goes), `cameras` (0 makes construction fail the way
picamera2 does with no camera), `lost_frames` (frame numbers the sensor never delivers).
"""

from __future__ import annotations

import queue
import threading
import time
from fractions import Fraction
from typing import Any, ClassVar

import av
import numpy as np
import numpy.typing as npt
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext

_BYTES_PER_PIXEL = {"RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4}
_AV_FORMATS = {
    "YUV420": "yuv420p",
    "BGR888": "rgb24",
    "RGB888": "bgr24",
    "XBGR8888": "rgba",
    "XRGB8888": "bgra",
}
_STRIDE_ALIGN = 64
_IN_FLIGHT = 16  # V4L2 output buffers: encode() blocks when all are queued


class FakeOutput:
    """Mirrors `picamera2.outputs.Output`: the base every encoder output must derive from."""

    def __init__(self, pts: Any = None) -> None:
        self.recording = False
        self.ptsoutput = pts
        self.needs_pacing = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(
        self,
        frame: bytes | None,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        """Receive one encoded frame (called on the encoder's thread)."""

    def outputtimestamp(self, timestamp: int | None) -> None:
        if self.ptsoutput is not None and timestamp is not None:
            print(f"{timestamp // 1000}.{timestamp % 1000:03}", file=self.ptsoutput, flush=True)

    def _add_stream(self, encoder_stream: Any, *args: Any, **kwargs: Any) -> None:
        pass


class FakeCompletedRequest:
    """Mirrors `picamera2.request.CompletedRequest`: buffers, metadata and a reference count."""

    def __init__(
        self,
        picam2: FakePicamera2,
        buffers: dict[str, npt.NDArray[np.uint8]],
        metadata: dict[str, Any],
    ) -> None:
        self.picam2 = picam2
        self.config = dict(picam2.camera_config or {})
        self.stream_map = {name: name for name in buffers}
        self.ref_count = 1
        self.lock = threading.Lock()
        self.buffers = buffers
        self._metadata = metadata

    def acquire(self) -> None:
        with self.lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self) -> None:
        with self.lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def make_buffer(self, name: str) -> npt.NDArray[np.uint8]:
        if self.stream_map.get(name) is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        return self.buffers[name].copy()

    def make_array(self, name: str) -> npt.NDArray[np.uint8]:
        with FakeMappedArray(self, name, write=False) as mapped:
            return np.array(mapped.array)


class FakeMappedArray:
    """Mirrors `picamera2.MappedArray`: the stream's buffer as an image-shaped numpy view."""

    def __init__(
        self, request: FakeCompletedRequest, stream: str, reshape: bool = True, write: bool = True
    ) -> None:
        self.__request = request
        self.__stream = stream
        self.__reshape = reshape
        self.__write = write
        self.__array: npt.NDArray[np.uint8] | None = None

    def __enter__(self) -> FakeMappedArray:
        array = self.__request.buffers[self.__stream]
        if self.__reshape:
            config = self.__request.config[self.__stream]
            fmt, (width, height), stride = config["format"], config["size"], config["stride"]
            if fmt in _BYTES_PER_PIXEL:
                depth = _BYTES_PER_PIXEL[fmt]
                array = array.reshape((height, stride))[:, : width * depth].reshape(
                    (height, width, depth)
                )
            elif fmt in ("YUV420", "YVU420"):
                array = array.reshape((height * 3 // 2, stride))
            else:
                raise RuntimeError("Format " + fmt + " not supported")
        if not self.__write:
            array = array.view()
            array.flags.writeable = False
        self.__array = array
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.__array = None

    @property
    def array(self) -> npt.NDArray[np.uint8] | None:
        return self.__array


class FakeH264Encoder:
    """Mirrors `picamera2.encoders.H264Encoder` (V4L2 hardware), encoding with libx264 instead."""

    def __init__(  # noqa: PLR0917 - picamera2's signature
        self,
        bitrate: int | None = None,
        repeat: bool = True,
        iperiod: int | None = None,
        framerate: float | None = None,
        enable_sps_framerate: bool = False,
        qp: int | None = None,
        profile: str | None = None,
    ) -> None:
        self._width = 0
        self._height = 0
        self._stride = 0
        self._format: str | None = None
        self._output: list[FakeOutput] = []
        self._running = False
        self._name: str | None = None
        self._lock = threading.Lock()
        self._output_lock = threading.Lock()
        self.firsttimestamp: int | None = None
        self.frame_skip_count = 1
        self._skip_count = 0
        self.audio = False
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.framerate = framerate
        self._enable_framerate = enable_sps_framerate
        self.qp = qp
        self.profile = profile
        self.frames_encoded = 0
        """Not in picamera2: how many frames this fake handed to its outputs (for tests)."""
        self._frames: queue.Queue[tuple[FakeCompletedRequest, str, int]] = queue.Queue(_IN_FLIGHT)
        self._thread: threading.Thread | None = None
        self._context: VideoCodecContext | None = None
        self._sent_headers = False

    @property
    def running(self) -> bool:
        return self._running

    @property
    def width(self) -> int:
        return self._width

    @width.setter
    def width(self, value: int) -> None:
        if not isinstance(value, int):
            raise RuntimeError("Width must be integer")
        self._width = value

    @property
    def height(self) -> int:
        return self._height

    @height.setter
    def height(self, value: int) -> None:
        if not isinstance(value, int):
            raise RuntimeError("Height must be integer")
        self._height = value

    @property
    def stride(self) -> int:
        return self._stride

    @stride.setter
    def stride(self, value: int) -> None:
        if not isinstance(value, int):
            raise RuntimeError("Stride must be integer")
        self._stride = value

    @property
    def format(self) -> str | None:
        return self._format

    @format.setter
    def format(self, value: str) -> None:
        if value not in _AV_FORMATS:
            raise RuntimeError("Unrecognised format", value, "for V4L2")
        self._format = value

    @property
    def output(self) -> FakeOutput | list[FakeOutput]:
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value: FakeOutput | list[FakeOutput]) -> None:
        outputs = value if isinstance(value, list) else [value]
        if not all(isinstance(out, FakeOutput) for out in outputs):
            raise RuntimeError("Must pass Output")
        self._output = outputs

    @property
    def name(self) -> str | None:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str):
            raise RuntimeError("Name must be string")
        self._name = value

    def encode(self, stream: str, request: FakeCompletedRequest) -> None:
        """Called on the camera's event-loop thread for every frame."""
        if self._skip_count == 0:
            with self._lock:
                self._encode(stream, request)
        self._skip_count = (self._skip_count + 1) % self.frame_skip_count

    def start(self, quality: Any = None) -> None:
        with self._lock:
            if self._running:
                raise RuntimeError("Encoder already running")
            self._setup(quality)
            self._running = True
            self.firsttimestamp = None
            for out in self._output:
                out.start()
            self._start()

    def stop(self) -> None:
        with self._lock:
            if not self._running:
                raise RuntimeError("Encoder already stopped")
            self._running = False
            self._stop()
            for out in self._output:
                out.stop()

    def outputframe(
        self,
        frame: bytes | None,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        with self._output_lock:
            for out in self._output:
                out.outputframe(frame, keyframe, timestamp, packet, audio)

    def _setup(self, quality: Any) -> None:
        if self.bitrate is None and self.qp is None:
            self.bitrate = int(
                6_000_000 * self.width * self.height * (self.framerate or 30) / (1920 * 1080 * 30)
            )

    def _start(self) -> None:
        for out in self._output:
            out._add_stream("video", "h264")
        context = av.CodecContext.create("libx264", "w")
        assert isinstance(context, VideoCodecContext)
        context.width, context.height, context.pix_fmt = self.width, self.height, "yuv420p"
        context.time_base = Fraction(1, 1_000_000)
        context.framerate = Fraction(self.framerate or 30).limit_denominator(1001)
        if self.bitrate is not None:
            context.bit_rate = self.bitrate
        options = {"preset": "ultrafast", "tune": "zerolatency"}
        if self.iperiod is not None:
            options["x264-params"] = f"keyint={self.iperiod}:min-keyint={self.iperiod}:scenecut=0"
        context.options = options
        if not self.repeat:
            # The hardware then sends SPS/PPS once, with the first frame only.
            context.flags |= av.codec.context.Flags.global_header
        context.open()
        self._context = context
        self._sent_headers = False
        self._thread = threading.Thread(
            target=self._thread_poll, name="FakeH264Encoder", daemon=True
        )
        self._thread.start()

    def _stop(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._context is not None:
            for packet in self._context.encode(None):
                self._output_packet(packet)

    def _encode(self, stream: str, request: FakeCompletedRequest) -> None:
        if not self._output or not self._running:
            return
        request.acquire()
        self._frames.put((request, stream, self._timestamp(request)))

    def _timestamp(self, request: FakeCompletedRequest) -> int:
        ts = int(request.get_metadata()["SensorTimestamp"] / 1000)
        if self.firsttimestamp is None:
            self.firsttimestamp = ts
            return 0
        return ts - self.firsttimestamp

    def _thread_poll(self) -> None:
        while self._running or self._frames.qsize() > 0:
            try:
                request, stream, timestamp_us = self._frames.get(timeout=0.4)
            except queue.Empty:
                continue
            try:
                with FakeMappedArray(request, stream, write=False) as mapped:
                    assert mapped.array is not None and self._format is not None
                    picture = av.VideoFrame.from_ndarray(
                        np.ascontiguousarray(mapped.array), format=_AV_FORMATS[self._format]
                    ).reformat(format="yuv420p")
                picture.pts = timestamp_us
                assert self._context is not None
                for packet in self._context.encode(picture):
                    self._output_packet(packet)
            finally:
                request.release()

    def _output_packet(self, packet: Packet[Stream]) -> None:
        data = bytes(packet)
        if not self.repeat and not self._sent_headers and self._context is not None:
            data = (self._context.extradata or b"") + data
            self._sent_headers = True
        self.frames_encoded += 1
        self.outputframe(data, packet.is_keyframe, packet.pts, packet, False)


class FakePicamera2:
    """Mirrors `picamera2.Picamera2` for video recording with an encoder and `pre_callback`."""

    realtime: ClassVar[bool] = True
    """Pace frames at the configured frame duration; False runs as fast as the encoder goes."""
    cameras: ClassVar[int] = 1
    """Cameras attached; with 0, construction fails as picamera2 does on a Pi with no camera."""
    lost_frames: ClassVar[frozenset[int]] = frozenset()
    """Frame numbers the sensor captures but never delivers (as when all buffers are busy)."""

    def __init__(
        self,
        camera_num: int = 0,
        verbose_console: Any = None,
        tuning: Any = None,
        allocator: Any = None,
    ) -> None:
        if camera_num >= self.cameras:
            # picamera2 indexes its list of attached cameras before anything else.
            raise IndexError("list index out of range")
        self.camera_idx = camera_num
        self.is_open = True
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.pre_callback: Any = None
        self.post_callback: Any = None
        self.encode_stream_name = "main"
        self.frames = 0
        self._encoders: set[FakeH264Encoder] = set()
        self.lock = threading.Lock()
        self._loop: threading.Thread | None = None
        self._halt = threading.Event()
        self.sensor_format = "SRGGB10_CSI2P"

    def create_video_configuration(  # noqa: PLR0917 - picamera2's signature
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        main_config = self._stream_config(
            {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, main or {}
        )
        lores_config = (
            None
            if lores is None
            else self._stream_config(
                {"format": "YUV420", "size": main_config["size"], "preserve_ar": False}, lores
            )
        )
        config = {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_config,
            "lores": lores_config,
            "raw": {"format": self.sensor_format, "size": main_config["size"], **(raw or {})},
            "controls": {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)}
            | (controls or {}),
            "sensor": sensor or {},
        }
        for role, name in (("Display", display), ("Encode", encode)):
            if name is not None and config.get(name) is None:
                raise RuntimeError(f"{role} stream {name} was not defined")
        config["display"], config["encode"] = display, encode
        return config

    def configure(self, camera_config: Any = None) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if camera_config is None or isinstance(camera_config, str):
            camera_config = self.create_video_configuration()
        config = dict(camera_config)
        for name in ("main", "lores"):
            if config.get(name) is not None:
                config[name] = self._with_layout(dict(config[name]))
        self.camera_config = config
        self.encode_stream_name = config["encode"]

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def start_encoder(
        self,
        encoder: Any = None,
        output: Any = None,
        pts: Any = None,
        quality: Any = None,
        name: str | None = None,
    ) -> None:
        chosen = encoder
        if chosen is None:
            if len(self._encoders) > 1:
                raise RuntimeError("Multiple possible encoders, need to pass encoder")
            chosen = next(iter(self._encoders), None)
        if chosen is None:
            raise RuntimeError("No encoder specified")
        if output is not None:
            if isinstance(output, str):
                raise RuntimeError("FakePicamera2 cannot write files; pass an Output")
            chosen.output = output
        streams = self.camera_configuration() or {}
        name = name or self.encode_stream_name
        if streams.get(name) is None:
            raise RuntimeError(f"Encode stream {name} was not defined")
        chosen.name = name
        chosen.width, chosen.height = streams[name]["size"]
        chosen.format = streams[name]["format"]
        chosen.stride = streams[name]["stride"]
        min_frame_duration = max(streams["controls"]["FrameDurationLimits"][0], 33333)
        if chosen.framerate is None:
            chosen.framerate = 1_000_000 / min_frame_duration
        chosen.start(quality=quality)
        with self.lock:
            self._encoders.add(chosen)

    def stop_encoder(self, encoders: Any = None) -> None:
        if encoders is None:
            chosen = list(self._encoders)
        elif isinstance(encoders, FakeH264Encoder):
            chosen = [encoders]
        else:
            chosen = list(encoders)
        for encoder in chosen:
            encoder.stop()
        with self.lock:
            for encoder in chosen:
                self._encoders.discard(encoder)

    @property
    def encoders(self) -> set[FakeH264Encoder]:
        return self._encoders

    def start_recording(  # noqa: PLR0917 - picamera2's signature
        self,
        encoder: Any,
        output: Any,
        pts: Any = None,
        config: Any = None,
        quality: Any = None,
        name: str | None = None,
    ) -> None:
        if self.camera_config is None and config is None:
            config = "video"
        if config is not None:
            self.configure(config)
        self.start_encoder(encoder, output, pts=pts, quality=quality, name=name)
        self.start()

    def stop_recording(self) -> None:
        self.stop()
        self.stop_encoder()

    def start(self, config: Any = None, show_preview: Any = False) -> None:
        if self.camera_config is None and config is None:
            config = "preview"
        if config is not None:
            self.configure(config)
        if self.started:
            return
        self._halt.clear()
        self._loop = threading.Thread(target=self._event_loop, name="FakePicamera2", daemon=True)
        self.started = True
        self._loop.start()

    def stop(self) -> None:
        if not self.started:
            return
        self._halt.set()
        if self._loop is not None and self._loop is not threading.current_thread():
            self._loop.join()
        self.started = False

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        self.is_open = False

    def _stream_config(self, defaults: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
        valid = ("format", "size", "stride", "preserve_ar")
        for key in updates:
            if key not in valid:
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {valid}")
        config = defaults | updates
        width, height = config["size"]
        config["size"] = (width - width % 2, height - height % 2)
        return config

    @staticmethod
    def _with_layout(stream: dict[str, Any]) -> dict[str, Any]:
        width, height = stream["size"]
        fmt = stream["format"]
        if fmt in _BYTES_PER_PIXEL:
            row = width * _BYTES_PER_PIXEL[fmt]
            stream["stride"] = -(-row // _STRIDE_ALIGN) * _STRIDE_ALIGN
            stream["framesize"] = stream["stride"] * height
        elif fmt in ("YUV420", "YVU420"):
            stream["stride"] = -(-width // _STRIDE_ALIGN) * _STRIDE_ALIGN
            stream["framesize"] = stream["stride"] * height * 3 // 2
        else:
            raise RuntimeError("Bad format " + fmt + " in stream main")
        return stream

    def _event_loop(self) -> None:
        assert self.camera_config is not None
        period_ns = int(self.camera_config["controls"]["FrameDurationLimits"][0]) * 1000
        origin_ns = time.monotonic_ns()
        number = 0
        while not self._halt.is_set():
            sensor_ns = origin_ns + number * period_ns
            if self.realtime:
                delay = sensor_ns - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
            if number not in self.lost_frames:
                self._process_request(number, sensor_ns, period_ns)
            number += 1

    def _process_request(self, number: int, sensor_ns: int, period_ns: int) -> None:
        request = FakeCompletedRequest(
            self,
            {"main": self._render(number)},
            {
                "SensorTimestamp": sensor_ns,
                "FrameDuration": period_ns // 1000,
                "ExposureTime": 10000,
            },
        )
        self.frames += 1
        if self.pre_callback:
            self.pre_callback(request)
        if self.post_callback:
            self.post_callback(request)
        for encoder in list(self._encoders):
            if encoder.name in request.stream_map:
                encoder.encode(encoder.name, request)
        request.release()

    def _render(self, number: int) -> npt.NDArray[np.uint8]:
        """A grey ramp with a bright bar sweeping across, laid out in the stream's format."""
        assert self.camera_config is not None
        stream = self.camera_config["main"]
        (width, height), stride = stream["size"], stream["stride"]
        buffer = np.zeros(stream["framesize"], dtype=np.uint8)
        if stream["format"] in _BYTES_PER_PIXEL:
            depth = _BYTES_PER_PIXEL[stream["format"]]
            image = buffer.reshape((height, stride))[:, : width * depth].reshape(
                (height, width, depth)
            )
            image[:] = (np.arange(width, dtype=np.uint16) * 200 // width).astype(np.uint8)[
                None, :, None
            ]
            left = (number * 4) % max(1, width - 16)
            image[:, left : left + 16] = 255
        else:
            luma = buffer[: stride * height].reshape((height, stride))
            luma[:, :width] = (number * 3) % 256
            buffer[stride * height :] = 128
        return buffer
