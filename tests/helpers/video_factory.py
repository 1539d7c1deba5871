"""Real video files with known content, written with PyAV, for the data and retrieval tests.

Frame `i` of a generated video is a flat colour that encodes `i`: red and green carry its digits in base 16 and blue
the multiples of 256, each digit `d` as the level `16 * d + 8`, so codec rounding of a few levels never changes
the index read back by `frame_index`.
"""

from __future__ import annotations

import fractions
import os
from collections.abc import Sequence

import av
import numpy as np


def frame_color(index: int) -> tuple[int, int, int]:
    """The RGB colour of frame `index`."""
    return (index % 16) * 16 + 8, (index // 16 % 16) * 16 + 8, (index // 256 % 16) * 16 + 8


def frame_index(frame: np.ndarray) -> int:
    """Read the frame index back from a decoded frame (`[H, W, 3]` or `[3, H, W]`, RGB, `uint8`)."""
    pixels = frame.reshape(3, -1) if frame.shape[0] == 3 and frame.ndim == 3 else frame.reshape(-1, 3).T
    red, green, blue = (int(round((float(channel.mean()) - 8) / 16)) for channel in pixels)
    return red + 16 * green + 256 * blue


def write_video(
    path: str | os.PathLike,
    num_frames: int,
    *,
    width: int = 32,
    height: int = 32,
    fps: int = 30,
    codec: str = "libx264",
    gop: int | None = None,
    faststart: bool = False,
    frame_durations_ms: Sequence[int] | None = None,
    rotation: int = 0,
    image: np.ndarray | None = None,
) -> str:
    """Write a video whose frame `i` has colour `frame_color(i)`; returns the path.

    Args:
        gop: keyframe interval (`None`: the encoder's default).
        faststart: put the mp4 index before the media data (so a truncated file still opens).
        frame_durations_ms: per-frame durations for a variable-frame-rate video (timestamps in milliseconds).
        rotation: display-matrix rotation in degrees, counter-clockwise, as a phone records portrait video.
        image: `[height, width, 3]` RGB content of every frame, instead of the flat index colour.
    """
    path = os.fspath(path)
    options = {"movflags": "faststart"} if faststart else {}
    even = width % 2 == 0 and height % 2 == 0
    with av.open(path, "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        # 4:2:0 needs even sizes; odd sizes are written in 4:4:4.
        stream.pix_fmt = "yuv420p" if even or codec != "libx264" else "yuv444p"
        # Encoder threads would be inherited, dead, by forked DataLoader workers; one thread keeps them safe.
        stream.codec_context.thread_count = 1
        if gop is not None:
            stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        time_base = fractions.Fraction(1, 1000)
        if frame_durations_ms is not None:
            stream.codec_context.time_base = time_base
        timestamp = 0
        for index in range(num_frames):
            if image is None:
                content = np.empty((height, width, 3), np.uint8)
                content[:] = frame_color(index)
            else:
                content = image
            frame = av.VideoFrame.from_ndarray(content, format="rgb24")
            if frame_durations_ms is not None:
                frame.pts, frame.time_base = timestamp, time_base
                timestamp += frame_durations_ms[index]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_truncated_video(
    path: str | os.PathLike, num_frames: int, *, keep: float = 0.5, faststart: bool = True
) -> str:
    """Write a video, then cut it to its first `keep` fraction of bytes, as an interrupted download would.

    With `faststart` the mp4 index comes first, so the cut file still opens and declares all `num_frames` frames,
    of which only the first part can be decoded; without it the index (written last) is lost.
    """
    path = os.fspath(path)
    write_video(path, num_frames, gop=10, faststart=faststart)
    with open(path, "rb") as file:
        data = file.read()
    with open(path, "wb") as file:
        file.write(data[: int(len(data) * keep)])
    return path
