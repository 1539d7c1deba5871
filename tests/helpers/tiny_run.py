"""What the training tests share: a tiny CLIP on disk and a tiny in-memory video-caption dataset."""

from __future__ import annotations

import functools
import random
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .clip import tiny_clip, tiny_clip_config


NUM_FRAMES = 4
BOS, EOS, PAD = 96, 97, 98


class TinyVideoCaptions(Dataset):
    """
    `num_videos` random videos of `NUM_FRAMES` 32-px frames, each with several captions. Like a real training set,
    every item draws randomness: one caption chosen with Python's `random`, and frame noise ("augmentation") from
    torch's global generator.
    """

    def __init__(self, num_videos: int = 16, captions_per_video: int = 3, words: int = 5, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.frames = torch.randn(num_videos, NUM_FRAMES, 3, 32, 32, generator=generator)
        self.captions = torch.randint(0, 90, (num_videos, captions_per_video, words), generator=generator)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        caption = random.randrange(self.captions.shape[1])
        frames = self.frames[index] + 0.05 * torch.randn_like(self.frames[index])
        return {"pixel_values": frames, "caption": self.captions[index, caption]}


def tokens(words: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.tensor([BOS]), words, torch.tensor([EOS])])


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack frames; wrap each caption in BOS/EOS (captions have equal length, so no padding)."""
    input_ids = torch.stack([tokens(item["caption"]) for item in items])
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.stack([item["pixel_values"] for item in items]),
    }


class TinyEvalVideos(Dataset):
    def __init__(self, source: TinyVideoCaptions) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.source.frames[index]


class TinyEvalCaptions(Dataset):
    def __init__(self, source: TinyVideoCaptions) -> None:
        self.source = source
        self.per_video = source.captions.shape[1]

    def __len__(self) -> int:
        return len(self.source) * self.per_video

    def __getitem__(self, index: int) -> torch.Tensor:
        return tokens(self.source.captions[index // self.per_video, index % self.per_video])


def tiny_eval_data(source: TinyVideoCaptions):
    from peft_vop.training import EvalData

    captions = TinyEvalCaptions(source)
    return EvalData(
        videos=TinyEvalVideos(source),
        captions=captions,
        caption_video=[index // captions.per_video for index in range(len(captions))],
        video_collate_fn=lambda frames: {"pixel_values": torch.stack(frames)},
        caption_collate_fn=lambda ids: {"input_ids": torch.stack(ids), "attention_mask": torch.ones(len(ids), 7)},
    )


@functools.cache
def tiny_clip_dir() -> Path:
    """A tiny random CLIP saved with `save_pretrained` (once per test session), usable as `model_name_or_path`."""
    directory = Path(tempfile.mkdtemp(prefix="tiny-clip-"))
    tiny_clip(seed=0).save_pretrained(directory)
    return directory


def base_config(tmp_path: Path, **overrides):
    """A `TrainingConfig` for a tiny CPU run; `overrides` replace its fields."""
    from peft_vop.training import TrainingConfig

    values = {
        "model_name_or_path": str(tiny_clip_dir()),
        "output_dir": str(tmp_path / "run"),
        "annotations": "in-memory",
        "eval_split": None,
        "num_frames": NUM_FRAMES,
        "batch_size": 4,
        "num_train_epochs": 2,
        "learning_rate": 1e-2,
        "num_workers": 0,
        "logging_steps": 1,
        "checkpoint_steps": None,
    }
    values.update(overrides)
    return TrainingConfig(**values)


@functools.cache
def world_clip_dir() -> Path:
    """
    A tiny random CLIP with the synthetic world's tokenizer and a 32-px image processor, saved like a Hub checkpoint
    (model, tokenizer, processor), so that `vop train` can read a real dataset with it.
    """
    from transformers import CLIPImageProcessor, CLIPModel

    from peft_vop.synthetic.tokenizer import build_world_tokenizer

    tokenizer = build_world_tokenizer(model_max_length=32)
    config = tiny_clip_config()
    config.text_config.vocab_size = len(tokenizer)
    config.text_config.max_position_embeddings = 32
    config.text_config.bos_token_id = tokenizer.bos_token_id
    config.text_config.eos_token_id = tokenizer.eos_token_id
    config.text_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    directory = Path(tempfile.mkdtemp(prefix="world-clip-"))
    CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


@functools.cache
def tiny_world() -> Path:
    """A synthetic world of 32-px, 12-frame mp4 clips: 8 for training, 4 for validation. Returns its annotations."""
    from peft_vop.synthetic import generate_world

    directory = Path(tempfile.mkdtemp(prefix="tiny-world-"))
    return generate_world(directory, num_train=8, num_val=4, num_test=0, image_size=32, min_frames=12, max_frames=12)
