import numpy as np
import pytest

from peft_vop.data import frame_segments, sample_frame_indices


def expected_uniform(num_video_frames, num_frames):
    """Spec: F equal segments, the middle frame of each (written out independently of the library)."""
    indices = []
    for k in range(num_frames):
        start = k * num_video_frames // num_frames
        end = max((k + 1) * num_video_frames // num_frames, start + 1)
        indices.append((start + end - 1) // 2)
    return indices


@pytest.mark.parametrize("num_video_frames", [1, 5, 11, 12, 13, 30, 299, 300, 1001])
@pytest.mark.parametrize("num_frames", [1, 8, 12])
def test_uniform_takes_middle_of_equal_segments(num_video_frames, num_frames):
    indices = sample_frame_indices(num_video_frames, num_frames, "uniform")
    assert indices == expected_uniform(num_video_frames, num_frames)
    assert len(indices) == num_frames
    assert all(0 <= index < num_video_frames for index in indices)
    assert indices == sorted(indices)


def test_uniform_known_values():
    assert sample_frame_indices(120, 12) == [4, 14, 24, 34, 44, 54, 64, 74, 84, 94, 104, 114]
    assert sample_frame_indices(300, 12) == [12, 37, 62, 87, 112, 137, 162, 187, 212, 237, 262, 287]
    # Fewer frames than samples: frames repeat, in order.
    assert sample_frame_indices(5, 8) == [0, 0, 1, 1, 2, 3, 3, 4]
    assert sample_frame_indices(1, 12) == [0] * 12


def test_segments_cover_the_video():
    segments = frame_segments(300, 12)
    assert segments[0][0] == 0 and segments[-1][1] == 300
    assert all(end == next_start for (_, end), (next_start, _) in zip(segments, segments[1:]))
    assert {end - start for start, end in segments} == {25}


def test_rand_is_seeded_and_stays_in_segments():
    draws = [sample_frame_indices(300, 12, "rand", np.random.default_rng(seed)) for seed in range(50)]
    assert draws[0] == sample_frame_indices(300, 12, "rand", np.random.default_rng(0))
    assert len({tuple(draw) for draw in draws}) > 40
    for draw in draws:
        for index, (start, end) in zip(draw, frame_segments(300, 12)):
            assert start <= index < end
    # Every frame of a segment can be drawn, the last one included.
    firsts = {draw[0] for draw in draws} | {
        sample_frame_indices(300, 12, "rand", np.random.default_rng(seed))[0] for seed in range(50, 400)
    }
    assert firsts == set(range(25))


def test_rand_needs_a_generator_and_modes_are_checked():
    with pytest.raises(ValueError, match="rng"):
        sample_frame_indices(10, 4, "rand")
    with pytest.raises(ValueError, match="'uniform', 'rand'"):
        sample_frame_indices(10, 4, "middle")
    with pytest.raises(ValueError, match="num_video_frames"):
        sample_frame_indices(0, 4)
    with pytest.raises(ValueError, match="num_frames"):
        sample_frame_indices(10, 0)
