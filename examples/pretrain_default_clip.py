"""Pre-train the small default CLIP that peft-vop ships, contrastively, on still frames of the synthetic world.

The model learns what a still shows (objects, colours, sizes and places), never what happens over time: that is
left to the VoP prompts. Every training pair is drawn fresh from a seeded stream, so no still is seen twice and the
same configuration gives the same model on the same machine and thread count. The result is saved in Hugging Face
format (model, tokenizer, processor) with a model card (`default_model_card.md` beside this file, filled in), so it
loads offline through the usual `from_pretrained`.

This program is kept out of the `peft_vop` package: the library ships the model, not the code that made it. Run it
from the repository root (with peft-vop installed, or `PYTHONPATH=.`); the defaults reproduce the shipped model (CPU,
one thread; the shipped run took 14 minutes on a 2-core machine shared with other jobs):

    python examples/pretrain_default_clip.py --output-dir peft_vop/default_model

Every field of `PretrainConfig` is an option (`--steps 50 --batch-size 32` for a quick try). The folder receives the
model (safetensors), tokenizer, processor, a model card (README.md) and `pretraining.json` with the log and metrics.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    HfArgumentParser,
    get_cosine_schedule_with_warmup,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from peft_vop.synthetic.clips import sample_clip
from peft_vop.synthetic.scene import COLOURS, SHAPES, SIZES
from peft_vop.synthetic.stills import (
    POSITION_PHRASES,
    StillSpec,
    grid_cell,
    sample_position_batch,
    sample_still,
    sample_still_batch,
)
from peft_vop.synthetic.tokenizer import build_world_tokenizer
from peft_vop.synthetic.video import through_yuv420p


# Independent random streams derived from the seed.
_TRAIN_STREAM, _EVAL_STREAM, _STATISTICS_STREAM, _PROBE_STREAM = 0, 1, 2, 3
_STATISTICS_STILLS = 2000
# One-object stills for the attribute probes of the final evaluation.
_PROBE_STILLS = 200
_MAX_LOGIT_SCALE = math.log(100.0)


@dataclass
class PretrainConfig:
    """Configuration of the default CLIP and of its pre-training.

    Args:
        seed (`int`): Seed of the still-frame streams and of the model initialisation.
        steps (`int`): Optimisation steps.
        batch_size (`int`): Image-text pairs per step; every other pair of the batch is a negative.
        moved_fraction (`float`): Chance that a training still is followed by a hard negative showing its objects in
            other places (see `sample_still_batch`).
        reshaped_fraction (`float`): Chance that a training still is followed by a hard negative in which one
            object has another shape.
        position_batch_every (`int`): Every n-th step trains on a batch of one-object stills, each object in all
            nine cells (see `sample_position_batch`); 0 never does.
        vision_position_init_std (`float`): Standard deviation of the initial vision position embeddings (the
            transformers default is 0.02).
        learning_rate (`float`): Peak AdamW learning rate.
        weight_decay (`float`): AdamW weight decay, applied to matrices only.
        warmup_ratio (`float`): Fraction of the steps with a linear warm-up before the cosine decay.
        image_size (`int`): Side of the square frames in pixels.
        patch_size (`int`): Side of a vision patch in pixels.
        vision_width (`int`): Hidden size of the vision tower.
        vision_layers (`int`): Transformer layers of the vision tower.
        text_width (`int`): Hidden size of the text tower.
        text_layers (`int`): Transformer layers of the text tower.
        num_attention_heads (`int`): Attention heads in both towers.
        projection_dim (`int`): Size of the shared image-text embedding.
        max_position_embeddings (`int`): Longest tokenized text, special tokens included.
        eval_size (`int`): Held-out stills for the final retrieval metrics.
        num_threads (`int`, *optional*): Torch CPU threads; `None` keeps torch's default.
        log_every (`int`): Steps between progress lines.
        probe_every (`int`): Steps between position probes (accuracy on held-out one-object stills) in the log.
    """

    seed: int = field(default=0, metadata={"help": "Seed of the still-frame streams and of the model initialisation."})
    steps: int = field(default=1000, metadata={"help": "Optimisation steps."})
    batch_size: int = field(default=128, metadata={"help": "Image-text pairs per step."})
    moved_fraction: float = field(
        default=0.5, metadata={"help": "Chance that a training still gets a partner with its objects elsewhere."}
    )
    reshaped_fraction: float = field(
        default=0.25, metadata={"help": "Chance that a training still gets a partner with one object reshaped."}
    )
    position_batch_every: int = field(
        default=2, metadata={"help": "Every n-th step trains on a batch that only positions tell apart (0: never)."}
    )
    vision_position_init_std: float = field(
        default=1.0, metadata={"help": "Standard deviation of the initial vision position embeddings."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (matrices only)."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Fraction of steps of linear warm-up."})
    image_size: int = field(default=64, metadata={"help": "Side of the square frames in pixels."})
    patch_size: int = field(default=16, metadata={"help": "Side of a vision patch in pixels."})
    vision_width: int = field(default=128, metadata={"help": "Hidden size of the vision tower."})
    vision_layers: int = field(default=4, metadata={"help": "Transformer layers of the vision tower."})
    text_width: int = field(default=128, metadata={"help": "Hidden size of the text tower."})
    text_layers: int = field(default=4, metadata={"help": "Transformer layers of the text tower."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads in both towers."})
    projection_dim: int = field(default=128, metadata={"help": "Size of the shared embedding."})
    max_position_embeddings: int = field(default=32, metadata={"help": "Longest tokenized text."})
    eval_size: int = field(default=1000, metadata={"help": "Held-out stills for the final metrics."})
    # On a 2-core machine shared with other jobs, one thread ran a step 2-8 times faster than two.
    num_threads: int | None = field(default=1, metadata={"help": "Torch CPU threads (None: torch's default)."})
    log_every: int = field(default=25, metadata={"help": "Steps between progress lines."})
    probe_every: int = field(default=200, metadata={"help": "Steps between position probes in the log."})

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "image_size", "patch_size", "eval_size", "log_every", "probe_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be positive; got {getattr(self, name)}.")
        if self.position_batch_every < 0:
            raise ValueError(f"`position_batch_every` must be 0 (never) or positive; got {self.position_batch_every}.")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"`image_size` must be a multiple of `patch_size`; got image_size={self.image_size}, "
                f"patch_size={self.patch_size}."
            )
        if self.batch_size < 2:
            raise ValueError(
                f"`batch_size` must be at least 2 so that a batch holds negatives; got {self.batch_size}."
            )


@dataclass
class OutputArguments:
    """Where the pre-trained model goes.

    Args:
        output_dir (`str`): Folder to save the model, tokenizer, processor and model card into.
    """

    output_dir: str = field(metadata={"help": "Folder to save the model, tokenizer, processor and model card into."})


def as_decoded_pairs(stills: list[StillSpec]) -> tuple[np.ndarray, list[str]]:
    """Draw stills with the look of frames decoded from the world's videos, and take their descriptions.

    Args:
        stills (`list[StillSpec]`): The stills, all of one image size.

    Returns:
        `tuple[numpy.ndarray, list[str]]`: frames `[N, H, W, 3]` (`uint8`) and their descriptions.
    """
    frames = np.stack([still.render() for still in stills])  # [N, H, W, 3]
    width = frames.shape[2]
    # One yuv420p round trip for the whole batch, stacked into a tall image, is ~100x faster than one per frame; it
    # matches the per-frame conversion except, rarely, by a level or two in the last rows of a frame.
    frames = through_yuv420p(frames.reshape(-1, width, 3)).reshape(frames.shape)
    return frames, [still.description for still in stills]


def held_out_stills(rng: np.random.Generator, count: int, image_size: int) -> list[StillSpec]:
    """Independent stills (no hard negatives), as drawn for statistics and evaluation."""
    return [sample_still(rng, image_size=image_size) for _ in range(count)]


def _one_object_stills(rng: np.random.Generator, count: int, image_size: int) -> list[StillSpec]:
    stills: list[StillSpec] = []
    while len(stills) < count:
        still = sample_still(rng, image_size=image_size)
        if len(still.placements) == 1:
            stills.append(still)
    return stills


def build_clip_config(config: PretrainConfig, tokenizer: CLIPTokenizer) -> CLIPConfig:
    """The `CLIPConfig` of the default model, with special token ids taken from `tokenizer`.

    Args:
        config (`PretrainConfig`): Sizes of the towers.
        tokenizer (`CLIPTokenizer`): The world tokenizer; its length is the vocabulary size.

    Returns:
        `CLIPConfig`: The configuration.
    """
    return CLIPConfig(
        text_config={
            "hidden_size": config.text_width,
            "intermediate_size": 4 * config.text_width,
            "num_hidden_layers": config.text_layers,
            "num_attention_heads": config.num_attention_heads,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": config.max_position_embeddings,
            # An eos id other than 2 makes CLIP pool the first EOS position rather than the largest id.
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            # Used by CLIPTextModelWithProjection; CLIPModel reads the top-level value.
            "projection_dim": config.projection_dim,
        },
        vision_config={
            "hidden_size": config.vision_width,
            "intermediate_size": 4 * config.vision_width,
            "num_hidden_layers": config.vision_layers,
            "num_attention_heads": config.num_attention_heads,
            "image_size": config.image_size,
            "patch_size": config.patch_size,
            "projection_dim": config.projection_dim,
        },
        projection_dim=config.projection_dim,
    )


def pixel_statistics(config: PretrainConfig) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of world stills in [0, 1], rounded to 4 decimals."""
    rng = np.random.default_rng([config.seed, _STATISTICS_STREAM])
    frames, _ = as_decoded_pairs(held_out_stills(rng, _STATISTICS_STILLS, config.image_size))
    pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
    return [round(float(v), 4) for v in pixels.mean(0)], [round(float(v), 4) for v in pixels.std(0)]


def build_processor(config: PretrainConfig, tokenizer: CLIPTokenizer) -> CLIPProcessor:
    """The `CLIPProcessor` of the default model: world tokenizer and an image processor sized for its frames.

    Args:
        config (`PretrainConfig`): Gives the image size and the seed of the pixel statistics.
        tokenizer (`CLIPTokenizer`): The world tokenizer.

    Returns:
        `CLIPProcessor`: Bicubic resize of the shortest edge to `image_size`, centre crop, normalisation by the
        mean and standard deviation of world stills.
    """
    mean, std = pixel_statistics(config)
    size = config.image_size
    # The PIL processor saves as the backend-agnostic "CLIPImageProcessor", and needs no torchvision to run here.
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, image_mean=mean, image_std=std
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def normalize_frames(frames: np.ndarray, processor: CLIPProcessor) -> torch.Tensor:
    """`uint8` frames `[N, H, W, 3]` already at the model's size -> `pixel_values` `[N, 3, H, W]`.

    Equal to `processor(images=frames).pixel_values` for frames of the processor's size (resize and crop are then the
    identity), without PIL's per-image cost.
    """
    image_processor = processor.image_processor
    mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, H, W]
    return (pixels - mean) / std


@torch.no_grad()
def still_retrieval_metrics(
    model: CLIPModel, processor: CLIPProcessor, frames: np.ndarray, descriptions: list[str], batch_size: int = 250
) -> dict[str, float]:
    """Retrieval between stills and their descriptions in one pool, through the processor as a user would call it.

    A retrieved item counts as right when its description is the query's own (identical descriptions of different
    stills are interchangeable).

    Args:
        model (`CLIPModel`): The model, in eval mode.
        processor (`CLIPProcessor`): Its processor.
        frames (`numpy.ndarray` of shape `[N, H, W, 3]`): The stills.
        descriptions (`list[str]`): Their descriptions.
        batch_size (`int`, *optional*, defaults to 250): Items per forward pass.

    Returns:
        `dict[str, float]`: `image_to_text_r1`, `image_to_text_r5`, `text_to_image_r1`, `text_to_image_r5` in
        percent, and `pool_size`.
    """
    image_embeds, text_embeds = [], []
    for start in range(0, len(frames), batch_size):
        inputs = processor(
            images=list(frames[start : start + batch_size]),
            text=descriptions[start : start + batch_size],
            padding=True,
            return_tensors="pt",
        )
        image_embeds.append(model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output)
        text_embeds.append(
            model.get_text_features(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            ).pooler_output
        )
    image_embeds = torch.nn.functional.normalize(torch.cat(image_embeds), dim=-1)  # [N, D]
    text_embeds = torch.nn.functional.normalize(torch.cat(text_embeds), dim=-1)  # [N, D]
    similarity = image_embeds @ text_embeds.T  # [N images, N texts]
    labels = np.array(descriptions)
    metrics = {"pool_size": float(len(frames))}
    for name, scores in (("image_to_text", similarity), ("text_to_image", similarity.T)):
        top = scores.topk(5, dim=1).indices.numpy()  # [N, 5]
        hits = labels[top] == labels[:, None]
        metrics[f"{name}_r1"] = round(100.0 * float(hits[:, 0].mean()), 2)
        metrics[f"{name}_r5"] = round(100.0 * float(hits.any(1).mean()), 2)
    return metrics


def longest_world_texts(tokenizer: CLIPTokenizer, image_size: int, samples: int = 2000) -> dict[str, int]:
    """Tokens (BOS and EOS included) of the longest clip caption and still description among `samples` of each.

    Args:
        tokenizer (`CLIPTokenizer`): The world tokenizer.
        image_size (`int`): Side of the frames in pixels.
        samples (`int`, *optional*, defaults to 2000): How many captions and descriptions to draw.

    Returns:
        `dict[str, int]`: `caption` and `description` lengths.
    """
    rng = np.random.default_rng(0)
    captions = [sample_clip(rng, image_size=image_size).caption for _ in range(samples)]
    descriptions = [sample_still(rng, image_size=image_size).description for _ in range(samples)]
    return {
        "caption": max(len(ids) for ids in tokenizer(captions)["input_ids"]),
        "description": max(len(ids) for ids in tokenizer(descriptions)["input_ids"]),
    }


@torch.no_grad()
def attribute_accuracy(
    model: CLIPModel, processor: CLIPProcessor, stills: list[StillSpec], attribute: str
) -> dict[str, float]:
    """Zero-shot recognition of one attribute on one-object stills: the true description against the same description
    with the attribute changed to each other value.

    Args:
        model (`CLIPModel`): The model, in eval mode.
        processor (`CLIPProcessor`): Its processor.
        stills (`list[StillSpec]`): Stills of exactly one object.
        attribute (`str`): `"colour"`, `"shape"`, `"size"` or `"position"`.

    Returns:
        `dict[str, float]`: `accuracy` and `chance`, in percent.
    """
    values = {
        "colour": list(COLOURS),
        "shape": list(SHAPES),
        "size": list(SIZES),
        "position": list(POSITION_PHRASES.values()),
    }
    if attribute not in values:
        raise ValueError(f"`attribute` must be one of {tuple(values)}; got {attribute!r}.")
    if any(len(still.placements) != 1 for still in stills):
        raise ValueError("`stills` must all show exactly one object.")
    choices = values[attribute]
    frames, descriptions = as_decoded_pairs(stills)
    correct = 0
    for frame, still, description in zip(frames, stills, descriptions):
        placement = still.placements[0]
        truth = {
            "colour": placement.object.colour,
            "shape": placement.object.shape,
            "size": placement.object.size,
            "position": POSITION_PHRASES[grid_cell(placement.x, placement.y, still.image_size)],
        }[attribute]
        inputs = processor(
            images=[frame],
            text=[description.replace(truth, value) for value in choices],
            padding=True,
            return_tensors="pt",
        )
        image = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        texts = model.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).pooler_output
        correct += int(choices[int((image @ texts.T).argmax())] == truth)
    return {"accuracy": round(100.0 * correct / len(stills), 1), "chance": round(100.0 / len(choices), 1)}


def pretrain_default_clip(output_dir: str | Path, config: PretrainConfig | None = None) -> dict:
    """Pre-train the default CLIP on world stills and save model, tokenizer, processor and model card.

    Args:
        output_dir (`str` or `Path`): Folder to save into (created if needed); `peft_vop/default_model` to ship it.
        config (`PretrainConfig`, *optional*): Sizes and optimisation; the defaults made the shipped model.

    Returns:
        `dict`: What was done and measured (also written to `pretraining.json` in `output_dir`).
    """
    config = config or PretrainConfig()
    output_dir = Path(output_dir)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    started = time.perf_counter()

    tokenizer = build_world_tokenizer(model_max_length=config.max_position_embeddings)
    longest = longest_world_texts(tokenizer, config.image_size)
    if max(longest.values()) > config.max_position_embeddings:
        raise ValueError(
            f"`max_position_embeddings` must hold the longest world text ({longest} tokens); got "
            f"{config.max_position_embeddings}."
        )
    processor = build_processor(config, tokenizer)
    torch.manual_seed(config.seed)
    model = CLIPModel(build_clip_config(config, tokenizer))
    with torch.no_grad():
        # Frames are mostly flat black: after the pre-layernorm the few object patches are all content, and with the
        # default 0.02 the position embeddings are too faint to learn from (a supervised 9-cell classifier stayed
        # at chance for 150 steps; with 0.5 it reached 91%).
        model.vision_model.embeddings.position_embedding.weight.normal_(std=config.vision_position_init_std)
    model.train()
    probe_stills = _one_object_stills(np.random.default_rng([config.seed, _PROBE_STREAM]), 100, config.image_size)

    matrices = [p for p in model.parameters() if p.ndim >= 2]
    others = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": config.weight_decay}, {"params": others, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, num_warmup_steps=round(config.warmup_ratio * config.steps), num_training_steps=config.steps
    )

    rng = np.random.default_rng([config.seed, _TRAIN_STREAM])
    log = []
    window_loss, window_accuracy = 0.0, 0.0
    for step in range(1, config.steps + 1):
        if config.position_batch_every and step % config.position_batch_every == 0:
            batch = sample_position_batch(rng, config.batch_size, image_size=config.image_size)
        else:
            batch = sample_still_batch(
                rng,
                config.batch_size,
                image_size=config.image_size,
                moved_fraction=config.moved_fraction,
                reshaped_fraction=config.reshaped_fraction,
            )
        frames, descriptions = as_decoded_pairs(batch)
        text = tokenizer(descriptions, padding=True, return_tensors="pt")
        outputs = model(**text, pixel_values=normalize_frames(frames, processor), return_loss=True)
        outputs.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            # As in CLIP, a temperature above 100 only sharpens the loss on noise.
            model.logit_scale.clamp_(0, _MAX_LOGIT_SCALE)
            targets = torch.arange(config.batch_size)
            window_accuracy += (outputs.logits_per_image.argmax(1) == targets).float().mean().item()
        window_loss += outputs.loss.item()
        if step % config.log_every == 0 or step == config.steps:
            count = step % config.log_every or config.log_every
            entry = {
                "step": step,
                "loss": round(window_loss / count, 4),
                "batch_accuracy": round(100.0 * window_accuracy / count, 2),
                "logit_scale": round(model.logit_scale.exp().item(), 2),
                "elapsed_s": round(time.perf_counter() - started, 1),
            }
            if step % config.probe_every == 0 or step == config.steps:
                model.eval()
                entry["position_accuracy"] = attribute_accuracy(model, processor, probe_stills, "position")["accuracy"]
                model.train()
            log.append(entry)
            print(json.dumps(entry), flush=True)
            window_loss, window_accuracy = 0.0, 0.0
    train_seconds = time.perf_counter() - started

    model.eval()
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)

    # Measure what was saved, loaded back the way users load it.
    saved_model = CLIPModel.from_pretrained(output_dir).eval()
    saved_processor = CLIPProcessor.from_pretrained(output_dir)
    eval_rng = np.random.default_rng([config.seed, _EVAL_STREAM])
    eval_frames, eval_descriptions = as_decoded_pairs(held_out_stills(eval_rng, config.eval_size, config.image_size))
    metrics = still_retrieval_metrics(saved_model, saved_processor, eval_frames, eval_descriptions)
    singles = _one_object_stills(eval_rng, _PROBE_STILLS, config.image_size)
    attributes = {
        attribute: attribute_accuracy(saved_model, saved_processor, singles, attribute)
        for attribute in ("colour", "shape", "size", "position")
    }
    report = {
        "config": asdict(config),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "longest_tokens": longest,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "training_pairs": config.steps * config.batch_size,
        "held_out_still_retrieval": metrics,
        "held_out_attribute_accuracy": attributes,
        "log": log,
        "environment": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        },
    }
    (output_dir / "pretraining.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / "README.md").write_text(model_card(report))
    summary = {"retrieval": metrics, "attributes": attributes, "total_seconds": report["total_seconds"]}
    print(json.dumps(summary), flush=True)
    return report


def model_card(report: dict) -> str:
    """The model card (README.md) of the default model: `default_model_card.md` filled in from a pre-training report.

    Args:
        report (`dict`): What `pretrain_default_clip` returns (and writes to `pretraining.json`).

    Returns:
        `str`: The card, in Markdown with Hub metadata.
    """
    config = report["config"]
    metrics = report["held_out_still_retrieval"]
    environment = report["environment"]
    final = report["log"][-1]
    threads = environment["torch_threads"]
    attribute_rows = "\n".join(
        f"| {name} | {values['accuracy']} | {values['chance']} |"
        for name, values in report["held_out_attribute_accuracy"].items()
    )
    template = (Path(__file__).with_name("default_model_card.md")).read_text()
    return template.format(
        **config,
        **{f"metric_{name}": value for name, value in metrics.items()},
        patches=(config["image_size"] // config["patch_size"]) ** 2,
        num_parameters=report["num_parameters"],
        vocab_size=report["vocab_size"],
        longest_caption=report["longest_tokens"]["caption"],
        longest_description=report["longest_tokens"]["description"],
        training_pairs=report["training_pairs"],
        cpu_count=environment["cpu_count"],
        threads=f"{threads} torch thread{'s' if threads != 1 else ''}",
        torch_version=environment["torch"],
        transformers_version=environment["transformers"],
        train_seconds=report["train_seconds"],
        total_seconds=report["total_seconds"],
        final_loss=final["loss"],
        final_batch_accuracy=final["batch_accuracy"],
        final_logit_scale=final["logit_scale"],
        pool_size=int(metrics["pool_size"]),
        chance_r1=100 / metrics["pool_size"],
        probe_stills=_PROBE_STILLS,
        attribute_rows=attribute_rows,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Pre-train with the options of `argv` (`--output_dir` and one option per `PretrainConfig` field) and save."""
    parser = HfArgumentParser([PretrainConfig, OutputArguments])
    config, output = parser.parse_args_into_dataclasses(args=argv)
    pretrain_default_clip(output.output_dir, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
