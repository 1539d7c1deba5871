"""The synthetic world: determinism, order pairs, and captions that tell what the decoded videos show."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from peft_vop.synthetic import (
    COLOURS,
    OPPOSITE_ACTIONS,
    POSITION_PHRASES,
    ClipSpec,
    generate_world,
    sample_clip,
    sample_still,
    through_yuv420p,
    write_video,
)
from peft_vop.synthetic.stills import grid_cell, sample_position_batch, sample_still_batch


SMALL_WORLD = {"num_train": 6, "num_val": 4, "num_test": 12}


def decode(path: Path) -> np.ndarray:
    """All frames of a video as RGB, `[T, H, W, 3]`."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def read_records(annotation_path: Path) -> list[dict]:
    return [json.loads(line) for line in annotation_path.read_text().splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("world"), seed=3, **SMALL_WORLD)


def test_annotation_format(world):
    records = read_records(world)
    assert [r["split"] for r in records] == ["train"] * 6 + ["val"] * 4 + ["test"] * 12
    assert len({r["id"] for r in records}) == len(records)
    for record in records:
        assert set(record) == {"id", "video", "captions", "split", "order_pair"}
        assert not Path(record["video"]).is_absolute() and (world.parent / record["video"]).is_file()
        assert len(record["captions"]) == 1 and record["captions"][0]
        assert (record["order_pair"] is None) == (record["split"] == "train")
    for split in ("train", "val", "test"):
        captions = [r["captions"][0] for r in records if r["split"] == split]
        assert len(set(captions)) == len(captions), f"duplicate captions in {split}"


def test_same_seed_same_world_other_seed_other_world(world, tmp_path):
    again = generate_world(tmp_path / "again", seed=3, reuse=False, **SMALL_WORLD)
    assert again.read_bytes() == world.read_bytes()
    for record in read_records(world):
        np.testing.assert_array_equal(decode(again.parent / record["video"]), decode(world.parent / record["video"]))

    other = generate_world(tmp_path / "other", seed=4, reuse=False, **SMALL_WORLD)
    assert other.read_bytes() != world.read_bytes()
    first = read_records(world)[0]["video"]
    assert not np.array_equal(decode(other.parent / first), decode(world.parent / first))


def test_test_clips_do_not_depend_on_the_training_set_size(world, tmp_path):
    bigger = generate_world(tmp_path / "bigger", seed=3, num_train=9, num_val=4, num_test=12)
    test_lines = [line for line in world.read_text().splitlines() if '"split": "test"' in line]
    assert [line for line in bigger.read_text().splitlines() if '"split": "test"' in line] == test_lines


@pytest.mark.parametrize("split", ["val", "test"])
def test_every_paired_clip_has_a_time_reversed_partner(world, split):
    records = {r["id"]: r for r in read_records(world) if r["split"] == split}
    for clip_id, record in records.items():
        partner = records[record["order_pair"]]
        assert partner["order_pair"] == clip_id and partner["id"] != clip_id
        assert partner["captions"] != record["captions"]
        frames = decode(world.parent / record["video"])
        partner_frames = decode(world.parent / partner["video"])
        # The same decoded frames, as a multiset ...
        assert sorted(f.tobytes() for f in frames) == sorted(f.tobytes() for f in partner_frames)
        # ... in a different order: exactly reversed, and not a palindrome.
        np.testing.assert_array_equal(partner_frames, frames[::-1])
        assert not np.array_equal(frames, partner_frames)


def test_paired_clips_are_sampled_into_mirrored_frames(world):
    sampling = pytest.importorskip("peft_vop.data.frame_sampling")
    for record in read_records(world):
        if record["order_pair"] is None:
            continue
        num_frames = len(decode(world.parent / record["video"]))
        assert num_frames == 12
        indices = list(sampling.sample_frame_indices(num_frames, 12, "uniform"))
        # Clip and partner are then sampled into the same frames in opposite orders.
        assert [num_frames - 1 - index for index in reversed(indices)] == indices


def _reverse_caption(caption: str) -> str:
    """Reverse a caption by rewriting its text, independently of `ClipSpec.reversed`."""
    events = []
    for event in reversed(caption.split(", then ")):
        words = event.split()
        noun, action = " ".join(words[:4]), " ".join(words[4:])
        events.append(f"{noun} {OPPOSITE_ACTIONS[action]}")
    return ", then ".join(events)


def test_partner_caption_is_the_reversed_story(world):
    records = {r["id"]: r for r in read_records(world)}
    for record in records.values():
        if record["order_pair"] is not None:
            partner_caption = records[record["order_pair"]]["captions"][0]
            assert partner_caption == _reverse_caption(record["captions"][0])


def _track(frames: np.ndarray, colour: str) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: whether an object of `colour` is visible, and its centroid `(x, y)` (NaN when absent)."""
    distance = np.linalg.norm(frames.astype(np.float64) - np.array(COLOURS[colour]), axis=-1)  # [T, H, W]
    mask = distance < 40
    count = mask.sum(axis=(1, 2))
    visible = count >= 6
    ys, xs = np.mgrid[: frames.shape[1], : frames.shape[2]]
    centres = (
        np.stack([(mask * xs).sum(axis=(1, 2)), (mask * ys).sum(axis=(1, 2))], axis=1) / np.maximum(count, 1)[:, None]
    )
    return visible, np.where(visible[:, None], centres, np.nan)


def test_captions_tell_what_the_decoded_videos_show_in_order(world):
    for record in read_records(world):
        frames = decode(world.parent / record["video"])
        size = frames.shape[1]
        change_windows = []
        for event in record["captions"][0].split(", then "):
            _, _, colour, _, *action_words = event.split()
            action = " ".join(action_words)
            visible, centres = _track(frames, colour)
            if action in ("appears", "disappears"):
                assert visible[-1] == (action == "appears") and visible[0] == (action == "disappears"), event
                changes = np.flatnonzero(visible[1:] != visible[:-1]) + 1
                assert len(changes) == 1, f"{event}: visibility changes at frames {changes}"
            else:
                assert visible.all(), f"{event}: the moving object must stay visible"
                dx, dy = centres[-1] - centres[0]
                along, across = {"left": (-dx, dy), "right": (dx, dy), "up": (-dy, dx), "down": (dy, dx)}[
                    action.split()[1]
                ]
                assert along > 0.3 * size and abs(across) < 1.0, f"{event}: moved by ({dx:.1f}, {dy:.1f})"
                changes = np.flatnonzero(np.abs(np.diff(centres, axis=0)).max(axis=1) > 0.5) + 1
            change_windows.append((changes.min(), changes.max()))
        # "A, then B": everything A does is over before B starts.
        for (_, earlier_end), (later_start, _) in zip(change_windows, change_windows[1:]):
            assert earlier_end < later_start, f"{record['id']}: events overlap in time {change_windows}"


def test_reversed_spec_draws_the_reversed_frames():
    spec = sample_clip(np.random.default_rng(7))
    partner = spec.reversed()
    assert isinstance(partner, ClipSpec)
    np.testing.assert_array_equal(partner.render(), spec.render()[::-1])
    assert partner.caption != spec.caption and partner.reversed() == spec


def test_sample_clip_is_seeded():
    first = sample_clip(np.random.default_rng(11))
    assert sample_clip(np.random.default_rng(11)) == first
    assert sample_clip(np.random.default_rng(12)) != first
    assert 12 <= first.num_frames <= 24


def test_videos_decode_to_the_yuv420p_look_of_the_drawn_frames(tmp_path):
    frames = sample_clip(np.random.default_rng(5)).render()
    write_video(tmp_path / "clip.mp4", frames)
    decoded = decode(tmp_path / "clip.mp4")
    np.testing.assert_array_equal(decoded, np.stack([through_yuv420p(frame) for frame in frames]))


def test_still_descriptions_name_every_object_and_its_cell():
    rng = np.random.default_rng(0)
    for _ in range(50):
        still = sample_still(rng)
        for placement in still.placements:
            phrase = POSITION_PHRASES[grid_cell(placement.x, placement.y, still.image_size)]
            assert f"{placement.object.phrase} {phrase}" in still.description
        colours = [p.object.colour for p in still.placements]
        assert len(set(colours)) == len(colours)


def test_still_batches_hold_hard_negatives_with_unique_descriptions():
    batch = sample_still_batch(np.random.default_rng(1), 64, moved_fraction=0.5, reshaped_fraction=0.5)
    assert len(batch) == 64 and len({still.description for still in batch}) == 64
    assert [s.description for s in sample_still_batch(np.random.default_rng(1), 64)] != [s.description for s in batch]
    moved = reshaped = 0
    for first, second in zip(batch, batch[1:]):
        objects = [p.object for p in first.placements]
        if objects and objects == [p.object for p in second.placements]:
            moved += 1  # the same objects, described in other places
        elif len(objects) == len(second.placements) and [(p.x, p.y) for p in first.placements] == [
            (p.x, p.y) for p in second.placements
        ]:
            changed = [a.object for a, b in zip(first.placements, second.placements) if a.object != b.object]
            assert len(changed) == 1
            reshaped += 1
    assert moved > 5 and reshaped > 5, (moved, reshaped)


def test_position_batches_show_each_object_in_every_cell():
    batch = sample_position_batch(np.random.default_rng(2), 20)
    assert len(batch) == 20 and len({still.description for still in batch}) == 20
    first_group = batch[:9]
    assert len({still.placements[0].object for still in first_group}) == 1
    cells = [grid_cell(s.placements[0].x, s.placements[0].y, s.image_size) for s in first_group]
    assert sorted(cells) == sorted(POSITION_PHRASES)
    with pytest.raises(ValueError, match="cells"):
        sample_still(np.random.default_rng(0), objects=[first_group[0].placements[0].object], cells=[(0, 0), (1, 1)])


def test_generate_world_reuses_a_finished_world(world):
    stamp = world.stat().st_mtime_ns
    assert generate_world(world.parent, seed=3, **SMALL_WORLD) == world
    assert world.stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_test": 3}, "num_test"),
        ({"num_train": -1}, "num_train"),
        ({"image_size": 30}, "image_size"),
        ({"min_frames": 8}, "min_frames"),
        ({"seed": -2}, "seed"),
    ],
)
def test_generate_world_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_world(tmp_path, **{"num_train": 2, "num_val": 2, "num_test": 2, **kwargs})


def test_write_video_rejects_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((3, 15, 16, 3), dtype=np.uint8))
