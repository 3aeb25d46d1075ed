"""The derived MP4's timeline: it starts at 0 with the first picture, whatever the clip's offset."""

from __future__ import annotations

import struct
from pathlib import Path

import av

from gateway.export.remux import remux_to_mp4
from tests.gateway.court_package import record_footage

AUDIO_FRAME_SECONDS = 1024 / 48_000


def _edits(mp4: bytes) -> list[list[tuple[int, int]]]:
    """Each track's edit list (ISO/IEC 14496-12 'elst', version 0): (duration, media_time)."""
    tracks, at = [], mp4.find(b"elst")
    while at >= 0:
        version, count = mp4[at + 4], struct.unpack(">I", mp4[at + 8 : at + 12])[0]
        assert version == 0
        tracks.append(
            [struct.unpack(">Ii", mp4[at + 12 + 12 * n : at + 20 + 12 * n]) for n in range(count)]
        )
        at = mp4.find(b"elst", at + 1)
    return tracks


def test_a_clip_from_the_middle_of_a_recording_starts_at_0_without_an_empty_edit(
    tmp_path: Path,
) -> None:
    segments = record_footage(4.0)
    clip, mp4 = tmp_path / "clip.ts", tmp_path / "clip.mp4"
    clip.write_bytes(b"".join(segment.data for segment in segments[2:]))  # starts 2 s in
    with av.open(str(clip)) as source:
        start, base = source.streams.video[0].start_time, source.streams.video[0].time_base
        assert start is not None and base is not None and start * base >= 1.9
    remux_to_mp4(clip, mp4)
    with av.open(str(mp4)) as derived:
        video = derived.streams.video[0]
        assert video.start_time == 0
        first = next(derived.demux(video))
        assert first.pts == 0 and first.is_keyframe
    data = mp4.read_bytes()
    movie = data.find(b"mvhd")  # version 0: version/flags, two times, then the timescale
    (movie_scale,) = struct.unpack(">I", data[movie + 16 : movie + 20])
    tracks = _edits(data)
    assert tracks and all(media_time >= 0 for media_time in (e[1] for e in tracks[0]))
    for edits in tracks[1:]:  # the sound: at most a delay shorter than one of its frames
        assert all(
            duration / movie_scale < AUDIO_FRAME_SECONDS
            for duration, media_time in edits
            if media_time == -1
        )
