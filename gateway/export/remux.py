"""The derived MP4 of a court package: the MPEG-TS clip remuxed for browsers, never re-encoded.

Packets are copied as they are (``ffmpeg -c copy``); FFmpeg's MP4 muxer moves AAC from ADTS
framing to MP4's (its automatic ``aac_adtstoasc``), and ``+faststart`` puts the index first
so a browser can play while it downloads. The pictures and sound are the recorded ones.
"""

from __future__ import annotations

from pathlib import Path

import av

from gateway.errors import ExportError


def remux_to_mp4(source: Path, target: Path) -> None:
    """Write ``target`` (MP4) with every audio and video packet of ``source`` (MPEG-TS)."""
    try:
        with (
            av.open(str(source)) as clip,
            av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as mp4,
        ):
            copied = [stream for stream in clip.streams if stream.type in ("video", "audio")]
            outputs = {stream.index: mp4.add_stream_from_template(stream) for stream in copied}
            for packet in clip.demux(copied):
                if packet.dts is None:  # the demuxer's end-of-stream marker carries no data
                    continue
                packet.stream = outputs[packet.stream.index]
                mp4.mux(packet)
    except (av.FFmpegError, ValueError, OSError) as error:
        raise ExportError(f"cannot remux {source} into an MP4: {error}") from None
