"""Writing the world's clips as mp4 files.

Clips are H.264 in yuv420p, as most real video is, but encoded losslessly (`qp=0`): the only change between the
drawn RGB frames and what a decoder returns is the RGB -> YUV 4:2:0 -> RGB conversion, which is made frame by frame.
Hence a clip and its time-reversed partner decode to exactly the same frames in the opposite order, and
`through_yuv420p` gives still frames exactly the look of decoded video frames.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


PIXEL_FORMAT = "yuv420p"
CODEC = "libx264"
# Lossless H.264; one thread so the bitstream does not depend on the machine's core count.
_CODEC_OPTIONS = {"qp": "0", "threads": "1"}


def write_video(path: str | Path, frames: np.ndarray, *, fps: int = 8) -> None:
    """Encode RGB frames as a lossless H.264 (yuv420p) mp4 file.

    Args:
        path (`str` or `Path`): Where to write the file; its folder must exist.
        frames (`numpy.ndarray` of shape `[T, H, W, 3]` and dtype `uint8`): The RGB frames; `H` and `W` must be
            even (4:2:0 chroma is stored at half resolution).
        fps (`int`, *optional*, defaults to 8): Frame rate stored in the file.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"`frames` must be a uint8 array of shape [frames, height, width, 3]; got dtype {frames.dtype} and "
            f"shape {frames.shape}."
        )
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"`frames` must have an even height and width for {PIXEL_FORMAT}; got {height}x{width}.")
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(CODEC, rate=fps, options=_CODEC_OPTIONS)
        stream.width, stream.height, stream.pix_fmt = width, height, PIXEL_FORMAT
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def through_yuv420p(frame: np.ndarray) -> np.ndarray:
    """Convert an RGB frame to yuv420p and back, as encoding a clip and decoding it does.

    Args:
        frame (`numpy.ndarray` of shape `[H, W, 3]` and dtype `uint8`): An RGB frame with even sides.

    Returns:
        `numpy.ndarray` of the same shape and dtype: the frame a decoder returns for it.
    """
    converted = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=PIXEL_FORMAT)
    return converted.to_ndarray(format="rgb24")
