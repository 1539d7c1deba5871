"""Writing a synthetic text-video retrieval benchmark to disk: mp4 clips and one JSONL annotation file.

The annotation file holds one JSON object per video in the project's generic format:
`{"id": ..., "video": <path relative to the annotation file's folder>, "captions": [...], "split": ...,
"order_pair": <id of the time-reversed partner, or null>}`. Validation and test clips come in order pairs: a clip
and the same frames played backwards, captioned with the opposite actions in reverse order. A model blind to frame
order sees the two as the same video and cannot rank the right one of a pair above the other better than chance.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .clips import ClipSpec, sample_clip
from .video import write_video


WORLD_VERSION = 1
"""Bumped whenever the same arguments would produce a different world."""

ANNOTATION_FILE = "annotations.jsonl"
MANIFEST_FILE = "world.json"
VIDEO_FOLDER = "videos"
SPLITS: tuple[str, ...] = ("train", "val", "test")
PAIRED_SPLITS: tuple[str, ...] = ("val", "test")
"""Splits made of order pairs."""


def generate_world(
    output_dir: str | Path,
    *,
    seed: int = 0,
    num_train: int = 600,
    num_val: int = 100,
    num_test: int = 200,
    image_size: int = 64,
    min_frames: int = 12,
    max_frames: int = 24,
    paired_frames: int = 12,
    fps: int = 8,
    reuse: bool = True,
) -> Path:
    """Generate the synthetic temporal video-text world: mp4 clips and their annotations.

    Each split is drawn from its own random stream derived from `seed`, so the validation and test clips do not
    depend on `num_train`. Captions are unique within a split. In the paired splits (`val`, `test`) clip `2k` is a
    fresh clip and clip `2k + 1` its time reversal, each naming the other in `order_pair`. Paired clips have exactly
    `paired_frames` frames: with 12, the uniform 12-frame sampling of evaluation (the middle frame of each of 12
    equal segments) takes every frame, so a clip and its partner are sampled into the same frames in opposite
    orders. For most other lengths the lower middle of even segments is not mirror-symmetric, and the two sampled
    sets would differ by a frame, which an order-blind model could exploit.

    The same arguments always give byte-identical annotations and identically decoding videos. A finished world
    (its `world.json` manifest is written last) generated with the same arguments is reused unless `reuse=False`.

    Args:
        output_dir (`str` or `Path`): Folder for `annotations.jsonl`, `world.json` and `videos/`; created if needed.
        seed (`int`, *optional*, defaults to 0): Seed of the world.
        num_train (`int`, *optional*, defaults to 600): Number of training clips.
        num_val (`int`, *optional*, defaults to 100): Number of validation clips; even (order pairs).
        num_test (`int`, *optional*, defaults to 200): Number of test clips; even (order pairs).
        image_size (`int`, *optional*, defaults to 64): Side of the square frames in pixels; even, at least 32.
        min_frames (`int`, *optional*, defaults to 12): Fewest frames of a training clip; at least 12 (three events).
        max_frames (`int`, *optional*, defaults to 24): Most frames of a training clip.
        paired_frames (`int`, *optional*, defaults to 12): Frames of every validation and test clip; at least 12.
        fps (`int`, *optional*, defaults to 8): Frame rate stored in the mp4 files.
        reuse (`bool`, *optional*, defaults to `True`): Return an existing world with the same arguments as is.

    Returns:
        `Path`: The annotation file.

    Example:

    ```python
    >>> from peft_vop.synthetic import generate_world
    >>> annotations = generate_world("/tmp/vop-world", seed=0, num_train=8, num_val=4, num_test=4)
    >>> annotations.name
    'annotations.jsonl'
    ```
    """
    counts = {"train": num_train, "val": num_val, "test": num_test}
    for split, count in counts.items():
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"`num_{split}` must be a non-negative int; got {count!r}.")
        if split in PAIRED_SPLITS and count % 2:
            raise ValueError(f"`num_{split}` must be even because {split} clips come in order pairs; got {count}.")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int; got {seed!r}.")
    if image_size < 32 or image_size % 2:
        raise ValueError(f"`image_size` must be an even number of pixels, at least 32; got {image_size}.")
    if not 12 <= min_frames <= max_frames:
        raise ValueError(
            f"`min_frames` must be at least 12 and at most `max_frames`; got min_frames={min_frames}, "
            f"max_frames={max_frames}."
        )
    if paired_frames < 12:
        raise ValueError(f"`paired_frames` must be at least 12 (three events of four frames); got {paired_frames}.")
    if fps <= 0:
        raise ValueError(f"`fps` must be positive; got {fps}.")

    output_dir = Path(output_dir)
    manifest = {
        "world_version": WORLD_VERSION,
        "seed": seed,
        "num_train": num_train,
        "num_val": num_val,
        "num_test": num_test,
        "image_size": image_size,
        "min_frames": min_frames,
        "max_frames": max_frames,
        "paired_frames": paired_frames,
        "fps": fps,
    }
    annotation_path = output_dir / ANNOTATION_FILE
    manifest_path = output_dir / MANIFEST_FILE
    finished = annotation_path.is_file() and manifest_path.is_file()
    if reuse and finished and json.loads(manifest_path.read_text()) == manifest:
        return annotation_path

    (output_dir / VIDEO_FOLDER).mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)
    lines = []
    for split_index, split in enumerate(SPLITS):
        # One stream per split: the test clips stay the same whatever the training set size.
        rng = np.random.default_rng([seed, split_index])
        paired = split in PAIRED_SPLITS
        lengths = (paired_frames, paired_frames) if paired else (min_frames, max_frames)
        sampling = {"image_size": image_size, "min_frames": lengths[0], "max_frames": lengths[1]}
        for index, (spec, partner) in enumerate(_split_clips(rng, counts[split], paired, sampling)):
            clip_id = f"{split}-{index:05d}"
            video = f"{VIDEO_FOLDER}/{clip_id}.mp4"
            write_video(output_dir / video, spec.render(), fps=fps)
            partner_id = None if partner is None else f"{split}-{partner:05d}"
            record = {
                "id": clip_id,
                "video": video,
                "captions": [spec.caption],
                "split": split,
                "order_pair": partner_id,
            }
            lines.append(json.dumps(record) + "\n")
    annotation_path.write_text("".join(lines))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return annotation_path


def _split_clips(
    rng: np.random.Generator, count: int, paired: bool, sampling: dict[str, int]
) -> Iterator[tuple[ClipSpec, int | None]]:
    """Yield `(clip, index of its order partner or None)` for the clips of one split, with unique captions."""
    used: set[str] = set()
    index = 0
    while index < count:
        spec = sample_clip(rng, **sampling)
        if not paired:
            if spec.caption not in used:
                used.add(spec.caption)
                yield spec, None
                index += 1
            continue
        partner = spec.reversed()
        if spec.caption not in used and partner.caption not in used:
            used.update((spec.caption, partner.caption))
            yield spec, index + 1
            yield partner, index
            index += 2
