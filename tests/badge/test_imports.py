"""What each camera path loads: the synthetic and picamera2 paths record without OpenCV.

Each case runs in a fresh interpreter, records real frames through CaptureLoop (encoder,
caption, segmenter) and then lists the modules loaded; OpenCV's own camera path is the only
one that may load ``cv2``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_RECORD = """
import json, sys, threading
from badge.capture import CaptureLoop, CaptureSettings
import badge.daemon
{make_source}
segments = []
done = threading.Event()
def keep(segment):
    segments.append(segment)
    done.set()
loop = CaptureLoop(source, None, CaptureSettings(segment_seconds=0.5), keep)
loop.start()
done.wait(60)
loop.stop()
print(json.dumps({{"segments": len(segments), "failure": str(loop.failure),
                   "cv2": "cv2" in sys.modules}}))
"""


def _record(make_source: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", _RECORD.format(make_source=make_source)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=120,
    )
    answer: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return answer


def test_the_synthetic_camera_records_without_opencv() -> None:
    answer = _record(
        "from badge.sources.synthetic import SyntheticCamera\n"
        "source = SyntheticCamera(320, 240, 30, 'b1', realtime=False, max_frames=45)"
    )
    assert answer["segments"] and answer["failure"] == "None"
    assert answer["cv2"] is False


def test_the_picamera2_path_records_without_opencv() -> None:
    answer = _record(
        "from badge.sources.picamera import PicameraSource, Picamera2Library\n"
        "from tests.fakes.fake_picamera2 import ("
        "FakeH264Encoder, FakeMappedArray, FakeOutput, FakePicamera2)\n"
        "FakePicamera2.realtime = False\n"
        "library = Picamera2Library(FakePicamera2, FakeH264Encoder, FakeMappedArray, FakeOutput)\n"
        "source = PicameraSource(320, 240, 30, 0.5, badge_id='b1', library=library)"
    )
    assert answer["segments"] and answer["failure"] == "None"
    assert answer["cv2"] is False


def test_opencv_frames_still_load_opencv_for_their_conversion() -> None:
    """The control: a BGR source is converted by OpenCV, so the check above can fail."""
    answer = _record(
        "from badge.sources.synthetic import SyntheticCamera\n"
        "source = SyntheticCamera(320, 240, 30, 'b1', realtime=False, max_frames=45,"
        " pixel_format='bgr24')"
    )
    assert answer["segments"] and answer["cv2"] is True
