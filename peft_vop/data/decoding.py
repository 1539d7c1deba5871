"""Decoding sampled frames from video files with PyAV, seeking instead of decoding whole videos.

A `VideoReader` opens a file once and builds a frame index by demuxing packets (no decoding): the presentation
timestamp of every frame, and which frames are keyframes. To read frame `i` it seeks to the keyframe at or before
it and decodes forward to it; when the next requested frame lies in the same group of pictures it keeps decoding
instead of seeking again. A 12-frame sample of a long video therefore costs about 12 short decodes, not the whole
video.

Frames come out as they are meant to be shown: a video whose display matrix rotates it (phones record portrait
video as landscape frames plus a 90° or 270° rotation) is decoded with that rotation applied.
"""

from __future__ import annotations

import bisect
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .frame_sampling import SamplingMode, sample_frame_indices


VideoSource = str | os.PathLike | bytes
UnreadablePolicy = Literal["raise", "repeat"]


class VideoDecodeError(RuntimeError):
    """A video could not be decoded (missing, empty, corrupt or truncated file, or unreadable frames).

    Args:
        path (`str`):
            The file (or a description of in-memory bytes) that failed.
        reason (`str`, *optional*):
            What went wrong, in words. (Optional only so that a DataLoader worker can re-raise the error in the
            main process with its whole message as `path`.)
    """

    def __init__(self, path: str, reason: str | None = None):
        super().__init__(path if reason is None else f"{path}: {reason}")
        self.path = path
        self.reason = reason if reason is not None else path

    def __reduce__(self):
        # Keeps the exception picklable, so it crosses DataLoader worker processes intact.
        return type(self), (self.path, self.reason)


@dataclass
class DecodedVideo:
    """The frames sampled from one video.

    Args:
        frames (`numpy.ndarray` of shape `[F, H, W, 3]`, `uint8`):
            RGB frames in sampling order.
        frame_indices (`list[int]`):
            Index (in presentation order) of the frame that was requested at each of the F positions.
        num_video_frames (`int`):
            Number of frames the container declares (or the index found) for the whole video.
        repeated (`list[int]`):
            Positions (in `[0, F)`) whose requested frame could not be decoded and that repeat the last good
            frame instead (the next good one when no earlier frame was readable). Empty for a clean read.
        decoded_frames (`int`):
            How many frames the decoder produced to serve the request, a measure of the work done.
    """

    frames: np.ndarray
    frame_indices: list[int]
    num_video_frames: int
    repeated: list[int]
    decoded_frames: int


def describe_source(source: VideoSource) -> str:
    """A short name for a video source, for messages: the path, or the size of in-memory bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes of video>"
    return os.fspath(source)


class VideoReader:
    """Random access to the frames of one video file, decoding as little as possible.

    Opening the reader checks the file and indexes its frames; any problem there raises `VideoDecodeError` naming
    the file. Use it as a context manager, or call `close()`.

    Args:
        source (`str`, `os.PathLike` or `bytes`):
            Path to a video file, or its encoded bytes.
        name (`str`, *optional*):
            How to name the video in error messages; defaults to the path (or a description of the bytes).

    Example:

    ```python
    >>> from peft_vop.data import VideoReader
    >>> with VideoReader("video.mp4") as reader:  # doctest: +SKIP
    ...     frames, repeated = reader.read_frames([0, 10, 20])
    ```
    """

    def __init__(self, source: VideoSource, name: str | None = None):
        self.name = name or describe_source(source)
        self.decoded_frames = 0
        self._container = self._open(source)
        try:
            self._stream = self._container.streams.video[0]
            # One decoding thread: parallelism comes from DataLoader workers, and a codec context that owns
            # threads deadlocks when a forked worker frees its inherited copy (FFmpeg waits on threads that did
            # not survive the fork).
            self._stream.codec_context.thread_count = 1
            self._index_frames()
        except Exception:
            self._container.close()
            raise
        self._frames_iter: Iterator[av.VideoFrame] | None = None
        # One converter for all frames of the video: it keeps its scaling context instead of making one per frame.
        self._reformatter = VideoReformatter()
        self._pending: av.VideoFrame | None = None
        self._last_pts: int | None = None
        self._size: tuple[int, int] | None = None

    def _open(self, source: VideoSource) -> av.container.InputContainer:
        if isinstance(source, bytes | bytearray | memoryview):
            if len(source) == 0:
                raise VideoDecodeError(self.name, "the video is empty (0 bytes)")
            file = io.BytesIO(bytes(source))
        else:
            path = os.fspath(source)
            if not os.path.exists(path):
                raise VideoDecodeError(self.name, "file not found")
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                raise VideoDecodeError(self.name, "the file is empty (0 bytes)")
            file = path
        try:
            container = av.open(file, mode="r")
        except av.error.FFmpegError as error:
            raise VideoDecodeError(self.name, f"cannot be opened as a video ({error.strerror or error})") from error
        if not container.streams.video:
            container.close()
            raise VideoDecodeError(
                self.name, "contains no video stream (the file may be truncated: its index could not be read)"
            )
        return container

    def _index_frames(self) -> None:
        """Read every packet header of the video stream (no decoding) to learn frame timestamps and keyframes."""
        pts: list[int] = []
        keyframes: list[int] = []
        packets = discarded = untimed = 0
        self._index_error: str | None = None
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:  # the flush packet demux yields at the end
                    continue
                packets += 1
                if packet.is_discard:  # cut by an edit list: never presented
                    discarded += 1
                    continue
                timestamp = packet.pts if packet.pts is not None else packet.dts
                if timestamp is None:
                    untimed += 1
                    continue
                pts.append(timestamp)
                if packet.is_keyframe:
                    keyframes.append(timestamp)
        except av.error.FFmpegError as error:
            self._index_error = f"reading the file stopped after {packets} packets ({error.strerror or error})"
        # Without a timestamp on every packet, frames cannot be addressed by seeking: decode in order instead.
        self._seekable = untimed == 0
        self._pts = sorted(pts)
        self._keyframes = sorted(keyframes)
        declared = self._stream.frames or 0
        if declared > packets and self._index_error is None:
            self._index_error = f"the container declares {declared} frames but only {packets} could be read"
        # Frames the container declares but the file no longer holds (truncated) count, as unreadable ones.
        self.num_frames = packets - discarded + max(declared - packets, 0)
        if self.num_frames == 0:
            raise VideoDecodeError(self.name, "contains no frames")

    @property
    def frame_times(self) -> list[float]:
        """Presentation time in seconds of each frame the index found, counted from the first frame."""
        first = self._pts[0] if self._pts else 0
        return [float((pts - first) * self._stream.time_base) for pts in self._pts]

    @property
    def duration(self) -> float:
        """Length of the video in seconds: the stream's declared duration, else the span of its frames."""
        if self._stream.duration is not None:
            return float(self._stream.duration * self._stream.time_base)
        times = self.frame_times
        rate = self._stream.average_rate
        return times[-1] + (float(1 / rate) if rate else 0.0) if times else 0.0

    def close(self) -> None:
        """Close the underlying container."""
        # The frame generator refers back to this reader: end it now, so that no packet or frame outlives the
        # container in a reference cycle (freed later by the garbage collector, possibly in a forked DataLoader
        # worker, after the container is gone, it crashes).
        if self._frames_iter is not None:
            self._frames_iter.close()
        self._frames_iter = None
        self._pending = None
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def read_frames(
        self, indices: Sequence[int], on_unreadable: UnreadablePolicy = "raise"
    ) -> tuple[np.ndarray, list[int]]:
        """Decode the frames at `indices` (presentation order, repeats allowed).

        A frame that fails to decode is retried once from a fresh seek. If it still fails, `on_unreadable`
        decides: `"raise"` raises `VideoDecodeError`; `"repeat"` repeats the last good frame of the request (the
        next good one if none came before) and reports the position.

        Args:
            indices (`Sequence[int]`):
                Frame indices in `[0, num_frames)`.
            on_unreadable (`str`, *optional*, defaults to `"raise"`):
                `"raise"` or `"repeat"`.

        Returns:
            `tuple[numpy.ndarray, list[int]]`: the frames `[len(indices), H, W, 3]` (`uint8`, RGB) and the
            positions in `indices` that repeat another frame because theirs was unreadable.
        """
        if on_unreadable not in ("raise", "repeat"):
            raise ValueError(f"`on_unreadable` must be 'raise' or 'repeat'; got {on_unreadable!r}.")
        bad = [index for index in indices if not 0 <= index < self.num_frames]
        if bad:
            raise ValueError(f"Frame indices {bad} are out of range for {self.name} ({self.num_frames} frames).")
        wanted = sorted(set(indices))
        found = self._decode_seeking(wanted) if self._seekable else self._decode_in_order(wanted)
        unreadable = [index for index in wanted if index not in found]
        if unreadable and (on_unreadable == "raise" or not found):
            detail = f"; {self._index_error}" if self._index_error else ""
            raise VideoDecodeError(
                self.name,
                f"{len(unreadable)} of the {len(wanted)} requested frames could not be decoded "
                f"(frame indices {unreadable[:8]}{'...' if len(unreadable) > 8 else ''} of {self.num_frames}){detail}",
            )
        frames, repeated, last_good = [], [], None
        for position, index in enumerate(indices):
            if index in found:
                last_good = found[index]
                frames.append(last_good)
                continue
            repeated.append(position)
            if last_good is None:  # nothing readable before it: use the next readable frame of the request
                last_good = next(found[later] for later in indices[position:] if later in found)
            frames.append(last_good)
        return np.stack(frames), repeated

    # --- decoding strategies -------------------------------------------------------------------------------

    def _decode_seeking(self, wanted: list[int]) -> dict[int, np.ndarray]:
        found: dict[int, np.ndarray] = {}
        for index in wanted:
            if index >= len(self._pts):
                continue  # declared by the container but absent from the file (truncated)
            target = self._pts[index]
            for attempt in range(2):  # the spec's "retry" for unreadable frames: a second try from a fresh seek
                if attempt or self._should_seek(target):
                    self._seek(target)
                frame = self._advance_to(target)
                if frame is not None:
                    found[index] = frame
                    break
        return found

    def _should_seek(self, target: int) -> bool:
        if self._frames_iter is None or self._last_pts is None or self._last_pts >= target:
            return True
        # Seek only when a keyframe lies between the decoder's position and the target: from there decoding
        # forward is shorter than continuing.
        keyframe = self._keyframes[bisect.bisect_right(self._keyframes, target) - 1] if self._keyframes else None
        return keyframe is not None and keyframe > self._last_pts

    def _seek(self, target: int) -> None:
        self._pending = None
        self._last_pts = None
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            self._frames_iter = None
            return
        self._frames_iter = self._decode_stream()

    def _decode_stream(self) -> Iterator[av.VideoFrame]:
        for packet in self._container.demux(self._stream):
            for frame in packet.decode():
                self.decoded_frames += 1
                yield frame

    def _advance_to(self, target: int) -> np.ndarray | None:
        """Decode forward until the frame with timestamp `target`; `None` if it never comes out."""
        if self._frames_iter is None:
            return None
        while True:
            frame = self._pending
            self._pending = None
            if frame is None:
                try:
                    frame = next(self._frames_iter)
                except (StopIteration, av.error.FFmpegError):
                    self._frames_iter = None
                    return None
            if frame.pts is None:
                continue
            if frame.pts > target:
                self._pending = frame  # the target was dropped by the decoder; keep this one for a later target
                return None
            self._last_pts = frame.pts
            if frame.pts == target:
                return self._to_rgb(frame)

    def _decode_in_order(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """Fallback for streams whose packets lack timestamps: count frames from the start."""
        found: dict[int, np.ndarray] = {}
        remaining = set(wanted)
        self._container.seek(0, stream=self._stream)
        try:
            for position, frame in enumerate(self._decode_stream()):
                if position in remaining:
                    found[position] = self._to_rgb(frame)
                    remaining.discard(position)
                    if not remaining:
                        break
        except av.error.FFmpegError:
            pass
        return found

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        # All frames of a sample must share a size to be stacked; a stream that changes resolution mid-way is
        # brought back to the size of its first decoded frame.
        if self._size is None:
            self._size = (frame.width, frame.height)
        width, height = self._size
        image = self._reformatter.reformat(frame, width, height, "rgb24").to_ndarray()
        # `rotation` is the display matrix's counter-clockwise angle, the direction in which `rot90` turns.
        quarter_turns = round(frame.rotation / 90) % 4
        return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def read_video(
    source: VideoSource,
    num_frames: int = 12,
    sampling: SamplingMode = "uniform",
    rng: np.random.Generator | None = None,
    on_unreadable: UnreadablePolicy = "raise",
    name: str | None = None,
) -> DecodedVideo:
    """Sample `num_frames` frames from a video and decode only those.

    Args:
        source (`str`, `os.PathLike` or `bytes`):
            Path to a video file, or its encoded bytes.
        num_frames (`int`, *optional*, defaults to 12):
            Number of frames `F` to sample (one per equal segment, see `sample_frame_indices`).
        sampling (`str`, *optional*, defaults to `"uniform"`):
            `"uniform"` (middle frame of each segment, for evaluation) or `"rand"` (random frame of each segment,
            for training; needs `rng`).
        rng (`numpy.random.Generator`, *optional*):
            Randomness for `"rand"` sampling.
        on_unreadable (`str`, *optional*, defaults to `"raise"`):
            What to do with a frame that cannot be decoded after a retry: `"raise"` a `VideoDecodeError`, or
            `"repeat"` the last good frame (recorded in `DecodedVideo.repeated`).
        name (`str`, *optional*):
            How to name the video in error messages.

    Returns:
        `DecodedVideo`: the frames `[F, H, W, 3]` and how they were obtained.

    Raises:
        `VideoDecodeError`: the file is missing, empty, not a video, truncated or corrupt (naming the file).
    """
    with VideoReader(source, name=name) as reader:
        indices = sample_frame_indices(reader.num_frames, num_frames, sampling, rng)
        frames, repeated = reader.read_frames(indices, on_unreadable=on_unreadable)
        return DecodedVideo(frames, indices, reader.num_frames, repeated, reader.decoded_frames)
