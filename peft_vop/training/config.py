"""Configuration of a `vop train` run: the paper's recipe as defaults, read from YAML/JSON with overrides."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import yaml

from .._atomic import write_json
from ..data.spec import DatasetSpec, ErrorPolicy


if TYPE_CHECKING:
    from peft_vop.config import VoPConfig


MixedPrecision = Literal["no", "fp16", "bf16"]
MIXED_PRECISION_CHOICES: tuple[str, ...] = get_args(MixedPrecision)
# The names of peft_vop.VARIANTS, spelled out here so that `vop train --help` can
# list them without importing the tuner or the data pipeline (tests/cli/test_arguments.py checks they agree).
Variant = Literal["vop", "vop_p", "vop_c", "vop_f", "vop_f+p", "vop_f+c"]
TrainSampling = Literal["rand", "uniform"]
# Writers that `accelerate` can build from a name (`Accelerator(log_with=...)`); "all" picks every installed one.
TRACKER_CHOICES: tuple[str, ...] = ("all", "tensorboard", "wandb", "comet_ml", "aim", "mlflow", "clearml", "dvclive")
RESUME_LATEST = "latest"
# What periodic evaluation reports (peft_vop.training.evaluation): both directions, and the sum of the six recalls.
EVAL_METRICS: tuple[str, ...] = (
    *(f"{direction}/{name}" for direction in ("t2v", "v2t") for name in ("R@1", "R@5", "R@10", "MdR", "MnR")),
    "rsum",
)
EvalMetric = Literal[EVAL_METRICS]
# The fields every run needs; `vop train` takes them as flags or from --config.
REQUIRED_FIELDS: tuple[str, ...] = ("model_name_or_path", "output_dir")
# Earlier spellings of config keys (and so of flags), still read for one release.
RENAMED_KEYS: dict[str, str] = {"num_epochs": "num_train_epochs"}
DEFAULT_SEED = 42

# Measured with `benchmarks/lr_sweep.py` (see docs/training.md, "How the default learning rate was chosen").
DEFAULT_LEARNING_RATE = 1e-2


class ConfigurationError(ValueError):
    """A training run cannot start: its config, data, model or output directory is not usable as given."""


@dataclass
class TrainingConfig:
    """
    Everything a `vop train` run needs. The defaults are the recipe of the VoP paper (Huang et al., CVPR 2023):
    AdamW with weight decay 0.2, a cosine schedule with 10% linear warm-up, gradient-norm clipping at 1.0, 12 frames
    per video, 32 videos per optimizer step and 5 epochs. Only the learning rate is our own choice (the paper
    searched [1e-6, 1e-2] without reporting the winner); docs/training.md says how it was measured.

    A config is usually read from a YAML or JSON file with [`TrainingConfig.from_file`], where command-line flags
    override single keys. Every field is checked when the object is built, before any model or data is loaded.

    Args:
        model_name_or_path (`str`):
            CLIP checkpoint to adapt: a local directory written by `save_pretrained`, a Hub id, or `"default"` for
            the small CLIP shipped with peft-vop (`peft_vop.synthetic.default_model_path()`).
        output_dir (`str`):
            Where the run writes its adapter, checkpoints, logs and resolved config. Must be empty, absent, or hold
            this same run (to resume it).
        annotations (`str`, *optional*):
            Annotation file of the dataset in the generic format of `peft_vop.data` (`.jsonl`: one video per line
            with `video`, `captions`, `split`, `id`; or `.csv`). Give this or `benchmark`.
        benchmark (`str`, *optional*):
            A benchmark read from its own files (`msrvtt`, `msvd`, `didemo`, `activitynet`, `lsmdc`), with
            `annotations_dir` and `video_dir`.
        annotations_dir (`str`, *optional*):
            Directory of the benchmark's annotation files.
        video_dir (`str`, *optional*):
            Directory of the benchmark's videos.
        hf_dataset (`str`, *optional*):
            A Hugging Face dataset with a video column: a directory written by `save_to_disk`, or a Hub id.
        video_column (`str`, defaults to `"video"`):
            Video column of `hf_dataset`.
        caption_column (`list[str]`, defaults to `["caption"]`):
            Caption column(s) of `hf_dataset`.
        id_column (`str`, *optional*):
            Unique-id column of `hf_dataset` (default: the video path).
        train_split (`str`, defaults to `"train"`):
            Split to train on (`train_9k` or `train_7k` for MSR-VTT).
        eval_split (`str`, *optional*, defaults to `"val"`):
            Split for periodic retrieval evaluation (`test` for MSR-VTT, `val_1` for ActivityNet); `None` disables
            evaluation.
        frame_cache (`str`, *optional*):
            Frame cache of the training split written by `vop prepare --sampling rand --seed <seed>` (the sampling
            settings must match `train_sampling`, `num_frames` and `seed`). Without it, frames are decoded at every
            step.
        eval_frame_cache (`str`, *optional*):
            Frame cache of the evaluation split written by `vop prepare` (uniform sampling).
        train_sampling (`str`, defaults to `"rand"`):
            Frame sampling for training: `"rand"` (a random frame of each of the F segments, the paper's) or
            `"uniform"` (the middle frame). Evaluation always samples uniformly.
        on_error (`str`, defaults to `"raise"`):
            Unreadable videos: `"raise"` stops naming the file, `"repair"` repeats the last good frame, `"skip"`
            leaves out the videos that `frame_cache` (and `eval_frame_cache`) do not hold: build them with `vop
            prepare --on_error skip`, which stores every readable video. Without the caches `"skip"` is refused (a
            video dropped while training would make batches uneven across processes).
        random_crop (`bool`, defaults to `True`):
            Augment training clips with one random resized crop per clip (the paper's). Turn it off when captions
            name positions ("at the top left"), which a crop can cut away; frames are then center-cropped.
        horizontal_flip (`bool`, defaults to `True`):
            Flip half of the training clips horizontally (the paper's). Turn it off when captions name directions
            or sides ("moves left"): a flip makes such a caption false.
        variant (`str`, defaults to `"vop"`):
            VoP variant: `"vop"`, `"vop_p"`, `"vop_c"`, `"vop_f"`, `"vop_f+p"` or `"vop_f+c"`.
        num_frames (`int`, defaults to 12):
            Frames sampled per video, for the data and for the adapter.
        adapter_options (`dict`, *optional*):
            Further keyword arguments of `peft_vop.VoPConfig` (e.g. `{"intra_frame_layers": 6}`).
        learning_rate (`float`, defaults to `DEFAULT_LEARNING_RATE`):
            Peak learning rate of AdamW, reached at the end of the warm-up.
        weight_decay (`float`, defaults to 0.2):
            AdamW weight decay.
        adam_beta1 (`float`, defaults to 0.9):
            AdamW beta1.
        adam_beta2 (`float`, defaults to 0.999):
            AdamW beta2.
        adam_epsilon (`float`, defaults to 1e-8):
            AdamW epsilon.
        num_train_epochs (`int`, defaults to 5):
            Passes over the training split.
        max_steps (`int`, *optional*):
            Stop after this many optimizer steps instead (the schedule is then sized by it).
        batch_size (`int`, defaults to 32):
            Videos per optimizer step over all processes together. Each of the `N` processes takes
            `batch_size / (N * gradient_accumulation_steps)` videos per forward pass, so a config means the same
            recipe on one CPU or on many GPUs.
        gradient_accumulation_steps (`int`, defaults to 1):
            Forward passes per optimizer step. Negatives of the contrastive loss come from one forward pass (of all
            processes), so accumulation saves memory at the price of fewer negatives per loss.
        gradient_checkpointing (`bool`, defaults to `False`):
            Keep only each encoder layer's input during the forward pass and recompute the rest in the backward pass
            (transformers' gradient checkpointing, non-reentrant): the activations the frozen layers keep for the
            prompts' gradients shrink to about a tenth, for about one more forward pass of time. Gradients are the
            same up to float rounding.
        warmup_ratio (`float`, defaults to 0.1):
            Fraction of the optimizer steps spent in linear warm-up before the cosine decay.
        max_grad_norm (`float`, *optional*, defaults to 1.0):
            Clip the global gradient norm to this value; `None` disables clipping.
        mixed_precision (`str`, *optional*):
            `"no"`, `"fp16"` or `"bf16"`, passed to `accelerate`. `None` takes the setting of `accelerate launch
            --mixed_precision` or of `accelerate config`, and `"no"` without either.
        seed (`int`, defaults to 42):
            The same default as `vop prepare`, so a frame cache built with defaults fits. Seeds adapter initialisation, shuffling, frame sampling, augmentation and caption choice.
        num_workers (`int`, *optional*):
            Data-loading worker processes per training process. `None` picks 0 when training on CPUs from a frame
            cache (the per-video work is then a few cheap tensor operations, faster on all cores inside the step than
            in worker processes that take cores away from the model's threads) and 2 otherwise (decoding overlaps
            the model step).
        logging_steps (`int`, defaults to 10):
            Log loss, learning rate and throughput every this many optimizer steps.
        disable_tqdm (`bool`, defaults to `False`):
            Hide the progress bar (the main process shows one otherwise); the step reports of evaluation still print.
        report_to (`list[str]`, *optional*):
            Trackers to send metrics to, by `accelerate` name (`"tensorboard"`, `"wandb"`, ... or `"all"`).
        eval_steps (`int`, *optional*):
            Evaluate every this many optimizer steps; `None` evaluates at the end of every epoch.
        metric_for_best_model (`str`, defaults to `"t2v/R@1"`):
            Retrieval metric that decides which evaluated adapter is kept in `output_dir/best` (higher is better,
            except for the rank metrics `MdR` and `MnR`).
        max_eval_videos (`int`, *optional*):
            Evaluate on the first this many videos of `eval_split` only (quick checks).
        eval_zero_shot (`bool`, defaults to `True`):
            When the run evaluates, also evaluate the base model (adapter disabled: mean-pooled frames) once before
            the first step, and warn at the end if the trained adapter does worse on `metric_for_best_model`.
        checkpoint_steps (`int`, *optional*, defaults to 500):
            Write a resumable checkpoint every this many optimizer steps; `None` only checkpoints at the end.
        checkpoints_total_limit (`int`, *optional*, defaults to 2):
            Keep only the newest this many checkpoints.
        resume_from_checkpoint (`str`, *optional*):
            `"latest"` to continue from the newest checkpoint in `output_dir` (starting fresh if there is none), or
            the path of one checkpoint.
        overwrite_output_dir (`bool`, defaults to `False`):
            Delete what `output_dir` holds before starting instead of refusing to run.
        push_to_hub (`bool`, defaults to `False`):
            Upload the final adapter with peft's `push_to_hub` at the end.
        hub_model_id (`str`, *optional*):
            Hub repository to push to; defaults to the name of `output_dir`.
        hub_private_repo (`bool`, *optional*):
            Create the Hub repository as private.
    """

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "CLIP, MetaCLIP 2, SigLIP or SigLIP 2 checkpoint: a local directory, a Hub id, or `default` (the small CLIP shipped here)."
        },
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Directory for the adapter, checkpoints, logs and the resolved config."}
    )
    annotations: str | None = field(
        default=None, metadata={"help": "Annotation file in the generic format (.jsonl or .csv)."}
    )
    benchmark: str | None = field(
        default=None, metadata={"help": "msrvtt, msvd, didemo, activitynet or lsmdc (instead of annotations)."}
    )
    annotations_dir: str | None = field(default=None, metadata={"help": "The benchmark's annotation directory."})
    video_dir: str | None = field(
        default=None, metadata={"help": "The benchmark's video directory, or the root of hf_dataset's relative paths."}
    )
    hf_dataset: str | None = field(
        default=None, metadata={"help": "A `datasets` dataset saved to disk, or a Hub id (instead of annotations)."}
    )
    video_column: str = field(default="video", metadata={"help": "Video column of hf_dataset."})
    caption_column: list[str] = field(
        default_factory=lambda: ["caption"], metadata={"help": "Caption column(s) of hf_dataset."}
    )
    id_column: str | None = field(default=None, metadata={"help": "Unique-id column of hf_dataset (default: path)."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(
        default="val", metadata={"help": "Split for periodic evaluation; `none` disables evaluation."}
    )
    frame_cache: str | None = field(default=None, metadata={"help": "Frame cache of the training split."})
    eval_frame_cache: str | None = field(default=None, metadata={"help": "Frame cache of the evaluation split."})
    train_sampling: TrainSampling = field(default="rand", metadata={"help": "Training frame sampling."})
    on_error: ErrorPolicy = field(
        default="raise",
        metadata={
            "help": "Unreadable videos: stop naming the file, repeat the last good frame, or (with frame caches "
            "built by `vop prepare --on_error skip`) leave out the videos the caches do not hold."
        },
    )
    random_crop: bool = field(
        default=True, metadata={"help": "One random resized crop per training clip; off for captions naming places."}
    )
    horizontal_flip: bool = field(
        default=True, metadata={"help": "Flip half of the training clips; off for captions naming directions."}
    )

    variant: Variant = field(default="vop", metadata={"help": "VoP variant."})
    num_frames: int = field(default=12, metadata={"help": "Frames per video."})
    adapter_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Further keyword arguments of peft_vop.VoPConfig, as JSON or YAML: '{intra_frame_layers: 2}'."
        },
    )

    learning_rate: float = field(default=DEFAULT_LEARNING_RATE, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.2, metadata={"help": "AdamW weight decay."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    num_train_epochs: int = field(default=5, metadata={"help": "Passes over the training split."})
    max_steps: int | None = field(
        default=None, metadata={"help": "Stop after this many optimizer steps (overrides num_train_epochs)."}
    )
    batch_size: int = field(default=32, metadata={"help": "Videos per optimizer step, all processes together."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Forward passes per optimizer step."})
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute layer activations in the backward pass: less memory, about one more forward."},
    )
    warmup_ratio: float = field(default=0.1, metadata={"help": "Fraction of steps in linear warm-up."})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "Gradient-norm clip; `none` disables it."})
    mixed_precision: MixedPrecision | None = field(
        default=None, metadata={"help": "Default: what `accelerate launch` or `accelerate config` set, else no."}
    )
    seed: int = field(
        default=DEFAULT_SEED, metadata={"help": "Seed of initialisation, frame sampling, shuffling and augmentation."}
    )
    num_workers: int | None = field(
        default=None,
        metadata={"help": "Data-loading workers per process (default: 0 on CPU with a frame cache, else 2)."},
    )

    logging_steps: int = field(default=10, metadata={"help": "Log every this many optimizer steps."})
    disable_tqdm: bool = field(default=False, metadata={"help": "Hide the progress bar."})
    report_to: list[str] = field(
        default_factory=list, metadata={"help": "Trackers by accelerate name, e.g. tensorboard, wandb, all."}
    )
    eval_steps: int | None = field(
        default=None, metadata={"help": "Evaluate every this many steps (default: at the end of every epoch)."}
    )
    metric_for_best_model: EvalMetric = field(
        default="t2v/R@1", metadata={"help": "Metric that picks the adapter kept in output_dir/best."}
    )
    max_eval_videos: int | None = field(default=None, metadata={"help": "Evaluate on this many videos only."})
    eval_zero_shot: bool = field(
        default=True,
        metadata={"help": "Evaluate the base model once before training and warn if the adapter ends below it."},
    )
    checkpoint_steps: int | None = field(
        default=500, metadata={"help": "Write a resumable checkpoint every this many steps; `none`: at the end only."}
    )
    checkpoints_total_limit: int | None = field(default=2, metadata={"help": "Keep this many newest checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "`latest` or the path of a checkpoint to resume from."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Delete the contents of output_dir instead of refusing to run."}
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final adapter with peft's push_to_hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repository id to push to."})
    hub_private_repo: bool | None = field(default=None, metadata={"help": "Create the Hub repository as private."})

    def __post_init__(self) -> None:
        if isinstance(self.caption_column, str):
            self.caption_column = [self.caption_column]
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]
        self.report_to = [name for name in self.report_to if name != "none"]
        self._check()

    def _check(self) -> None:
        for name in REQUIRED_FIELDS:
            if not getattr(self, name):
                raise ValueError(
                    f"`{name}` is required (--{name} or the config file's key); got {getattr(self, name)!r}."
                )
        self.dataset_spec()  # exactly one dataset source, with what it needs
        _check_choice("train_sampling", self.train_sampling, get_args(TrainSampling))
        _check_choice("on_error", self.on_error, get_args(ErrorPolicy))
        if self.on_error == "skip":
            for name in ("frame_cache", *(("eval_frame_cache",) if self.eval_split is not None else ())):
                if getattr(self, name) is None:
                    raise ValueError(
                        f"`on_error` 'skip' needs `{name}` (--{name}): a frame cache built by `vop prepare --on_error "
                        "skip` holds every readable video, and the others are left out before training starts (a "
                        "video dropped while training would make batches uneven across processes); or use "
                        "--on_error repair."
                    )
        _check_int("num_frames", self.num_frames, minimum=1)
        _check_int("num_train_epochs", self.num_train_epochs, minimum=1)
        _check_int("max_steps", self.max_steps, minimum=1, optional=True)
        _check_int("batch_size", self.batch_size, minimum=2, why="the contrastive loss needs negatives")
        _check_int("gradient_accumulation_steps", self.gradient_accumulation_steps, minimum=1)
        _check_int("num_workers", self.num_workers, minimum=0, optional=True)
        _check_int("seed", self.seed, minimum=0)
        _check_int("logging_steps", self.logging_steps, minimum=1)
        _check_int("eval_steps", self.eval_steps, minimum=1, optional=True)
        _check_int("max_eval_videos", self.max_eval_videos, minimum=2, optional=True)
        _check_int("checkpoint_steps", self.checkpoint_steps, minimum=1, optional=True)
        _check_int("checkpoints_total_limit", self.checkpoints_total_limit, minimum=1, optional=True)
        if self.batch_size % self.gradient_accumulation_steps:
            raise ValueError(
                f"`batch_size` ({self.batch_size}) must be a multiple of `gradient_accumulation_steps` "
                f"({self.gradient_accumulation_steps}): every forward pass takes the same number of videos."
            )
        if self.batch_size // self.gradient_accumulation_steps < 2:
            raise ValueError(
                f"`batch_size / gradient_accumulation_steps` = {self.batch_size // self.gradient_accumulation_steps}"
                " videos per forward pass; the contrastive loss needs at least 2."
            )
        _check_float("learning_rate", self.learning_rate, low=0.0, low_open=True)
        _check_float("weight_decay", self.weight_decay, low=0.0)
        _check_float("adam_epsilon", self.adam_epsilon, low=0.0, low_open=True)
        _check_float("warmup_ratio", self.warmup_ratio, low=0.0, high=1.0, high_open=True)
        if self.max_grad_norm is not None:
            _check_float("max_grad_norm", self.max_grad_norm, low=0.0, low_open=True)
        _check_float("adam_beta1", self.adam_beta1, low=0.0, high=1.0, high_open=True)
        _check_float("adam_beta2", self.adam_beta2, low=0.0, high=1.0, high_open=True)
        if self.mixed_precision is not None:
            _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION_CHOICES)
        unknown = [name for name in self.report_to if name not in TRACKER_CHOICES]
        if unknown:
            raise ValueError(
                f"`report_to` (--report_to) must name trackers among {list(TRACKER_CHOICES)}; got {unknown}."
            )
        if not isinstance(self.adapter_options, dict):
            raise TypeError(f"`adapter_options` must be a mapping; got {type(self.adapter_options).__name__}.")
        clashing = sorted({"variant", "num_frames"} & set(self.adapter_options))
        if clashing:
            raise ValueError(
                f"`adapter_options` must not set {clashing}: they are top-level keys of the training config."
            )
        self.adapter_config()  # an unknown variant or adapter option fails here, before anything is loaded
        _check_choice("metric_for_best_model", self.metric_for_best_model, EVAL_METRICS)
        if self.eval_split is not None and self.eval_split == self.train_split:
            raise ValueError(
                f"`eval_split` and `train_split` are both {self.train_split!r}; evaluate on held-out videos, or "
                "disable evaluation with --eval_split none (`eval_split: null` in a config file)."
            )

    @property
    def num_epochs(self) -> int:
        """Earlier name of `num_train_epochs`, kept for one release."""
        return self.num_train_epochs

    @property
    def adam_betas(self) -> tuple[float, float]:
        """`(adam_beta1, adam_beta2)`, as `torch.optim.AdamW` takes them."""
        return self.adam_beta1, self.adam_beta2

    @property
    def augmentations(self) -> tuple[str, ...]:
        """The training augmentations switched on, as `VideoTextDataset(augment=...)` names them."""
        return tuple(name for name, on in (("crop", self.random_crop), ("flip", self.horizontal_flip)) if on)

    def dataset_spec(self) -> DatasetSpec:
        """The [`~peft_vop.data.spec.DatasetSpec`] of the configured dataset (checked when built)."""
        return DatasetSpec(
            annotations=self.annotations,
            benchmark=self.benchmark,
            annotations_dir=self.annotations_dir,
            video_dir=self.video_dir,
            hf_dataset=self.hf_dataset,
            video_column=self.video_column,
            caption_column=tuple(self.caption_column),
            id_column=self.id_column,
        )

    def adapter_config(self) -> VoPConfig:
        """The `peft_vop.VoPConfig` of the adapter this run trains."""
        from peft_vop.config import VoPConfig  # lazy: `vop train --help` imports this module, not the tuner

        try:
            return VoPConfig(variant=self.variant, num_frames=self.num_frames, **self.adapter_options)
        except TypeError as error:  # an unknown keyword in `adapter_options`
            raise ValueError(f"`adapter_options` holds an option VoPConfig does not take: {error}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> TrainingConfig:
        """
        Read a config from a YAML (`.yaml`/`.yml`) or JSON (`.json`) file, then apply `overrides`.

        Args:
            path (`str` or `os.PathLike`):
                The config file: a mapping whose keys are field names of [`TrainingConfig`].
            overrides:
                Field values that replace those of the file (the command line's flags).

        Returns:
            [`TrainingConfig`]: the checked configuration.
        """
        return cls.from_dict({**load_config_file(path), **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        """
        Build a config from a mapping of field names, refusing unknown keys.

        Args:
            values (`dict`):
                Field names of [`TrainingConfig`] and their values.
        """
        from transformers import HfArgumentParser  # lazy, like VoPConfig: `vop train --help` stays fast

        values = dict(values)
        for old, new in RENAMED_KEYS.items():
            if old in values:
                values.setdefault(new, values.pop(old))
        if "adam_betas" in values:  # an earlier key: the pair that is now `adam_beta1` and `adam_beta2`
            values.setdefault("adam_beta1", values["adam_betas"][0])
            values.setdefault("adam_beta2", values.pop("adam_betas")[1])
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown training config keys {unknown}; accepted keys are {sorted(known)}.")
        (config,) = HfArgumentParser(cls).parse_dict(values)
        return config

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable mapping (what `output_dir/training_config.json` holds)."""
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as JSON to `path` (atomically: a kill leaves the old file or the new one)."""
        write_json(path, self.to_dict(), sort_keys=True)

    def trajectory_fields(self) -> dict[str, Any]:
        """
        The fields that decide the sequence of parameter updates: a run can only be resumed under a config that agrees
        on all of them (logging, evaluation, checkpointing and hub options may change between the two).
        """
        changeable = {
            "output_dir",
            "num_workers",
            "eval_frame_cache",
            "logging_steps",
            "disable_tqdm",
            "report_to",
            "eval_steps",
            "eval_split",
            "metric_for_best_model",
            "max_eval_videos",
            "checkpoint_steps",
            "checkpoints_total_limit",
            "resume_from_checkpoint",
            "overwrite_output_dir",
            "push_to_hub",
            "hub_model_id",
            "hub_private_repo",
        }
        return {key: value for key, value in self.to_dict().items() if key not in changeable}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """
    Read the mapping stored in a YAML or JSON config file.

    Args:
        path (`str` or `os.PathLike`):
            A `.yaml`, `.yml` or `.json` file.

    Returns:
        `dict`: the mapping (empty for an empty YAML file).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ValueError(f"Config file `{path}` must end in .yaml, .yml or .json; got {suffix!r}.")
    if not path.is_file():
        raise FileNotFoundError(f"Config file `{path}` does not exist.")
    text = path.read_text()
    if suffix == ".json":
        values = json.loads(text)
    else:
        values = yaml.safe_load(text) or {}
    if not isinstance(values, dict):
        raise ValueError(f"Config file `{path}` must hold a mapping of config keys; got {type(values).__name__}.")
    return values


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` (--{name}) must be one of {list(choices)}; got {value!r}.")


def _check_int(name: str, value: Any, *, minimum: int, optional: bool = False, why: str = "") -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        accepted = f"an integer >= {minimum}" + (" or null" if optional else "")
        reason = f" ({why})" if why else ""
        raise ValueError(f"`{name}` (--{name}) must be {accepted}{reason}; got {value!r}.")


def _check_float(
    name: str,
    value: Any,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high)
        )
    if not ok:
        interval = ("(" if low_open else "[") + f"{low}, " + ("inf)" if high is None else f"{high}")
        interval += "" if high is None else (")" if high_open else "]")
        raise ValueError(f"`{name}` (--{name}) must be a number in {interval}; got {value!r}.")
