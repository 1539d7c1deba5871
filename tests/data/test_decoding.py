import os

import numpy as np
import pytest
from helpers.video_factory import frame_index, write_truncated_video, write_video

from peft_vop.data import VideoDecodeError, VideoReader, read_video, sample_frame_indices


def decoded_indices(decoded):
    return [frame_index(frame) for frame in decoded.frames]


def test_uniform_sampling_decodes_the_exact_frames(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 30)
    decoded = read_video(path, num_frames=12)
    assert decoded.frame_indices == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28]
    assert decoded_indices(decoded) == decoded.frame_indices
    assert decoded.frames.shape == (12, 32, 32, 3) and decoded.frames.dtype == np.uint8
    assert decoded.num_video_frames == 30 and decoded.repeated == []


def test_rand_sampling_decodes_the_drawn_frames(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 90, gop=8)
    first = read_video(path, 12, "rand", np.random.default_rng(3))
    again = read_video(path, 12, "rand", np.random.default_rng(3))
    other = read_video(path, 12, "rand", np.random.default_rng(4))
    assert first.frame_indices == again.frame_indices != other.frame_indices
    assert first.frame_indices == sample_frame_indices(90, 12, "rand", np.random.default_rng(3))
    assert decoded_indices(first) == first.frame_indices
    assert decoded_indices(other) == other.frame_indices


def test_long_video_is_not_decoded_in_full(tmp_path):
    # 10 s at 30 fps with a keyframe every 10 frames: 12 samples need ~12 short decodes, not 300 frames.
    path = write_video(tmp_path / "long.mp4", 300, gop=10)
    decoded = read_video(path, 12)
    assert decoded_indices(decoded) == decoded.frame_indices == sample_frame_indices(300, 12)
    assert decoded.decoded_frames <= 12 * 10
    assert decoded.decoded_frames < 300 / 2


def test_reading_every_frame_decodes_each_once(tmp_path):
    path = write_video(tmp_path / "all.mp4", 64, gop=16)
    with VideoReader(path) as reader:
        frames, repeated = reader.read_frames(list(range(64)))
        assert reader.decoded_frames == 64
    assert [frame_index(frame) for frame in frames] == list(range(64)) and repeated == []


def test_default_encoder_gop_still_gives_exact_frames(tmp_path):
    path = write_video(tmp_path / "default_gop.mp4", 300)
    decoded = read_video(path, 12)
    assert decoded_indices(decoded) == sample_frame_indices(300, 12)


def test_requests_in_any_order_with_repeats(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 40, gop=5)
    with VideoReader(path) as reader:
        frames, _ = reader.read_frames([30, 2, 2, 17, 39, 0])
    assert [frame_index(frame) for frame in frames] == [30, 2, 2, 17, 39, 0]


def test_short_video_repeats_frames(tmp_path):
    path = write_video(tmp_path / "short.mp4", 5)
    decoded = read_video(path, 12)
    assert decoded.frame_indices == sample_frame_indices(5, 12) == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]
    assert decoded_indices(decoded) == decoded.frame_indices
    assert decoded.repeated == []  # repeated by sampling, not because of unreadable frames

    single = read_video(write_video(tmp_path / "one.mp4", 1), 12)
    assert decoded_indices(single) == [0] * 12


def test_variable_frame_rate(tmp_path):
    # Frames last 100 ms or 10 ms: segments are counted in frames, not in time.
    durations = [100 if index % 3 == 0 else 10 for index in range(24)]
    path = write_video(tmp_path / "vfr.mp4", 24, frame_durations_ms=durations)
    decoded = read_video(path, 8)
    assert decoded.num_video_frames == 24
    assert decoded.frame_indices == sample_frame_indices(24, 8)
    assert decoded_indices(decoded) == decoded.frame_indices


@pytest.mark.parametrize(("width", "height", "codec"), [(33, 17, "libx264"), (17, 45, "mpeg4"), (64, 48, "mpeg4")])
def test_odd_sizes_and_codecs(tmp_path, width, height, codec):
    path = write_video(tmp_path / "odd.mp4", 10, width=width, height=height, codec=codec)
    decoded = read_video(path, 4)
    assert decoded.frames.shape == (4, height, width, 3)
    assert decoded_indices(decoded) == decoded.frame_indices


def test_bytes_source(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 20)
    with open(path, "rb") as file:
        decoded = read_video(file.read(), 4, name="clip-in-memory")
    assert decoded_indices(decoded) == sample_frame_indices(20, 4)


# --- errors: each names the file ------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match=r"missing\.mp4: file not found") as info:
        read_video(tmp_path / "missing.mp4")
    assert info.value.path == str(tmp_path / "missing.mp4")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoDecodeError, match=r"empty\.mp4: the file is empty"):
        read_video(tmp_path / "empty.mp4")
    with pytest.raises(VideoDecodeError, match="empty"):
        read_video(b"")


def test_corrupt_file(tmp_path):
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(VideoDecodeError, match=r"corrupt\.mp4: cannot be opened as a video"):
        read_video(tmp_path / "corrupt.mp4")


def test_truncated_file_without_index(tmp_path):
    # The mp4 index is written last by default: cutting the file loses it, and the video stream with it.
    write_truncated_video(tmp_path / "truncated.mp4", 60, faststart=False)
    with pytest.raises(VideoDecodeError, match=r"truncated\.mp4: (contains no video stream|cannot be opened)"):
        read_video(tmp_path / "truncated.mp4")


def truncated_faststart(tmp_path):
    return write_truncated_video(tmp_path / "truncated.mp4", 120)


def test_truncated_file_with_index_reports_unreadable_frames(tmp_path):
    # With the index first, the file opens and declares all its frames, but the later ones are gone.
    path = truncated_faststart(tmp_path)
    with pytest.raises(VideoDecodeError, match=r"truncated\.mp4: \d+ of the 12 requested frames could not be decoded"):
        read_video(path, 12)
    with pytest.raises(VideoDecodeError, match="declares 120 frames but only"):
        read_video(path, 12)


def test_unreadable_frames_repeat_the_last_good_frame_when_asked(tmp_path):
    path = truncated_faststart(tmp_path)
    decoded = read_video(path, 12, on_unreadable="repeat")
    readable = [position for position in range(12) if position not in decoded.repeated]
    assert decoded.repeated and readable == list(range(len(readable)))  # the tail of the video is missing
    last_good = decoded.frame_indices[readable[-1]]
    assert decoded_indices(decoded) == decoded.frame_indices[: len(readable)] + [last_good] * len(decoded.repeated)


def test_unreadable_first_frames_take_the_next_good_one(tmp_path):
    path = truncated_faststart(tmp_path)
    with VideoReader(path) as reader:
        frames, repeated = reader.read_frames([110, 115, 3, 119], on_unreadable="repeat")
    assert repeated == [0, 1, 3]
    assert [frame_index(frame) for frame in frames] == [3, 3, 3, 3]
    with VideoReader(path) as reader, pytest.raises(VideoDecodeError, match="could not be decoded"):
        reader.read_frames([110, 119], on_unreadable="repeat")  # nothing readable to repeat


def test_out_of_range_indices(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 10)
    with VideoReader(path) as reader, pytest.raises(ValueError, match=r"\[10\] are out of range"):
        reader.read_frames([0, 10])


def test_error_survives_pickling():
    import pickle

    error = pickle.loads(pickle.dumps(VideoDecodeError("a.mp4", "file not found")))
    assert (error.path, error.reason, str(error)) == ("a.mp4", "file not found", "a.mp4: file not found")
    assert os.fspath(error.path) == "a.mp4"


def test_closed_reader_leaves_no_reference_cycles(tmp_path):
    # PyAV objects freed late by the garbage collector (after their container is closed, possibly in a forked
    # DataLoader worker) crash or deadlock: a read must release everything by reference counting alone.
    import gc

    path = write_video(tmp_path / "clip.mp4", 40, gop=5)
    gc.collect()
    gc.disable()
    try:
        read_video(path, 6)
        read_video(path, 6, "rand", np.random.default_rng(0), on_unreadable="repeat")
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_streams_without_timestamps_are_decoded_in_order(tmp_path):
    # Some containers (e.g. AVI with B-frames) give packets no timestamps: frames are then counted from the start.
    path = write_video(tmp_path / "clip.mp4", 30, gop=5)
    with VideoReader(path) as reader:
        reader._seekable = False
        frames, repeated = reader.read_frames([20, 3, 3, 11])
        assert reader.decoded_frames == 21  # up to the last requested frame, not beyond
    assert [frame_index(frame) for frame in frames] == [20, 3, 3, 11] and repeated == []


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_videos_are_decoded_as_displayed(tmp_path, rotation):
    # A 64x32 landscape picture: white top-left quarter, black elsewhere; the display matrix turns it.
    picture = np.zeros((32, 64, 3), np.uint8)
    picture[:16, :32] = 255
    path = write_video(tmp_path / "phone.mp4", 4, width=64, height=32, rotation=rotation, image=picture)
    frames = read_video(path, num_frames=2).frames
    expected = np.rot90(picture, rotation // 90)  # counter-clockwise, as the display matrix says
    assert frames.shape == (2, *expected.shape)
    for frame in frames:
        assert np.abs(frame.astype(int) - expected).mean() < 8  # codec noise only
    unrotated = read_video(write_video(tmp_path / "plain.mp4", 4, width=64, height=32, image=picture), 2).frames
    assert unrotated.shape == (2, 32, 64, 3)
