"""The VoP training loop on `accelerate`, read top to bottom: prepare, loop, backward through the accelerator.

The same code runs on a CPU, on one GPU, and under `accelerate launch` (or `torchrun`) on many processes, GPUs or
machines; `accelerate` brings DDP, mixed precision and gradient accumulation. FSDP and DeepSpeed are refused at start:
they have never been run with VoP, and a frozen backbone with ~0.1% trainable parameters does not need them (DDP keeps
one replica of the backbone per device, which fits even a 1B-parameter CLIP).
The decisions around the loop (when to evaluate, when to checkpoint, what to log) are the small functions and the
logger below it; checkpoints are written by `checkpointing`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration, PartialState
from accelerate.utils import ProjectConfiguration, parse_flag_from_env, set_seed
from peft import get_peft_model
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import AutoConfig, get_cosine_schedule_with_warmup

from ..families import checkpoint_family, load_dual_encoder
from ..model_names import check_model_name, portable_model_name
from .checkpointing import (
    BEST_DIR,
    CONFIG_NAME,
    LOGS_DIR,
    TrainerState,
    check_output_dir,
    export_adapter,
    load_checkpoint,
    register_adapter_hooks,
    remove_stale_temporaries,
    reset_output_dir,
    save_checkpoint,
    stops_on_signals,
)
from .config import ConfigurationError, TrainingConfig
from .contrastive import VideoTextEncoder, contrastive_step
from .evaluation import EvalData, evaluate_during_training, is_better, prepare_eval_loaders
from .samplers import EpochShuffleSampler, SeededSamples
from .train_data import DataWaitClock, build_eval_data, build_train_data, choose_loader_settings, device_step


@dataclass
class TrainingResult:
    """
    What [`train`] returns.

    Args:
        output_dir (`Path`): the run directory; the final adapter is at its root.
        global_step (`int`): optimizer steps taken in total (including those before a resume).
        train_loss (`float`, *optional*): mean loss over the last logging window.
        best_metric (`float`, *optional*): best value of `metric_for_best_model`; the adapter is in `output_dir/best`.
        best_step (`int`, *optional*): the step of `best_metric`.
        eval_history (`list[dict]`): the metrics of every evaluation of this process's run, with their `step`.
        data_wait_fraction (`float`, *optional*): the part of this process's training time (evaluation and
            checkpoints left out) that the step spent waiting for its next batch.
        zero_shot_metrics (`dict`, *optional*): the base model's metrics (adapter disabled) before the first step,
            when `eval_zero_shot` is on and the run evaluates.
    """

    output_dir: Path
    global_step: int
    train_loss: float | None = None
    best_metric: float | None = None
    best_step: int | None = None
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    data_wait_fraction: float | None = None
    zero_shot_metrics: dict[str, float] | None = None


@stops_on_signals
def train(
    config: TrainingConfig,
    *,
    train_dataset: Dataset | None = None,
    eval_data: EvalData | None = None,
    collate_fn: Callable[[list[Any]], dict[str, torch.Tensor]] | None = None,
) -> TrainingResult:
    """
    Train a VoP adapter on CLIP with the contrastive recipe of the paper and write it with `save_pretrained`.

    Without datasets, the splits named by `config` are read with `peft_vop.data`. Any map-style dataset whose
    `collate_fn` yields `input_ids`, `attention_mask` and `pixel_values [B, F, 3, H, W]` works as well.

    Args:
        config ([`TrainingConfig`]):
            The run's configuration.
        train_dataset (`torch.utils.data.Dataset`, *optional*):
            Training samples (one video and one of its captions each); defaults to `config.train_split`.
        eval_data ([`EvalData`], *optional*):
            Videos and captions to evaluate retrieval on; defaults to `config.eval_split`.
        collate_fn (`Callable`, *optional*):
            Batches training samples; defaults to the data pipeline's collator for `train_dataset`.

    Returns:
        [`TrainingResult`]: where the adapter is and how training went.

    Raises:
        [`TrainingInterrupted`]: SIGINT or SIGTERM stopped the run; only complete checkpoints are left.
    """
    # Everything that can be checked without loading a model or decoding a frame is checked first.
    # Without a GPU (or other accelerator), accelerate only goes multi-process (gloo) when told to use the CPU.
    check_distributed_engine()
    use_cpu = not torch.accelerator.is_available()
    processes = PartialState(cpu=use_cpu)  # cheap: reads the launcher's environment
    try:
        resume_from = check_output_dir(config)
        adapter_config = config.adapter_config()
        model_path = check_model_name(config.model_name_or_path)
        check_model_fits(model_path, adapter_config)
        if train_dataset is None:
            train_dataset, collate_fn = build_train_data(config)
        elif collate_fn is None:
            raise ValueError("`collate_fn` is required when `train_dataset` is given.")
        if eval_data is None and config.eval_split is not None:
            eval_data = build_eval_data(config)
        micro_batch = check_batching(config, len(train_dataset), processes.num_processes)
    except (ValueError, TypeError, OSError) as error:
        raise ConfigurationError(str(error)) from error

    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=config.report_to or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / LOGS_DIR)),
        # `batch_size` is global: each loader batch is split over the processes, so the batches (and every
        # process's negatives) are the same on 1 or N processes. Pinned batches are copied to a GPU asynchronously.
        dataloader_config=DataLoaderConfiguration(split_batches=True, non_blocking=not use_cpu),
    )
    if accelerator.mixed_precision == "fp16" and not accelerator.native_amp:
        accelerator.print("mixed_precision fp16 has no effect on a CPU: training runs in fp32.")
    prepare_output_dir(accelerator, config)

    # Model: the frozen backbone (CLIP, MetaCLIP 2, SigLIP or SigLIP 2) with a VoP adapter, wrapped so that one
    # forward embeds both modalities.
    set_seed(config.seed)
    clip = load_dual_encoder(model_path)
    # peft records this as the adapter's base model: the shipped CLIP by its name, not by one installation's path.
    clip.name_or_path = portable_model_name(config.model_name_or_path)
    encoder = VideoTextEncoder(get_peft_model(clip, adapter_config))
    if config.gradient_checkpointing:
        # The prompted layers recompute their activations in the backward pass (tested for every variant).
        clip.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable = [parameter for parameter in encoder.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable,
        lr=config.learning_rate,
        betas=config.adam_betas,
        eps=config.adam_epsilon,
        weight_decay=config.weight_decay,
    )

    # Data: one permutation per epoch; drop_last keeps every batch full, so no video is its own negative twice.
    # Workers hand over uint8 frames; `prepare_batch` crops, resizes, flips and normalises them on the device.
    loader_settings = choose_loader_settings(
        config.num_workers,
        use_cpu=use_cpu,
        cached=config.frame_cache is not None,
        num_processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),  # processes sharing this machine's cores
    )
    train_loader = DataLoader(
        SeededSamples(train_dataset, config.seed),
        batch_size=micro_batch,
        sampler=EpochShuffleSampler(len(train_dataset), config.seed),
        drop_last=True,
        collate_fn=collate_fn,
        **loader_settings.loader_kwargs(),
    )
    prepare_batch = device_step(collate_fn)
    schedule = Schedule.of(config, batches_per_epoch=len(train_dataset) // micro_batch)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer,
        num_warmup_steps=round(config.warmup_ratio * schedule.total_steps),
        num_training_steps=schedule.total_steps,
    )

    encoder, optimizer, train_loader, scheduler = accelerator.prepare(encoder, optimizer, train_loader, scheduler)
    register_adapter_hooks(accelerator)
    eval_loaders = None
    if eval_data is not None:
        eval_settings = choose_loader_settings(
            config.num_workers, use_cpu=use_cpu, cached=config.eval_frame_cache is not None
        )
        eval_loaders = prepare_eval_loaders(accelerator, eval_data, micro_batch, eval_settings.num_workers)
    logit_scale = accelerator.unwrap_model(encoder).logit_scale.detach()
    logit_bias = accelerator.unwrap_model(encoder).logit_bias  # the sigmoid loss's bias; None for softmax families
    logit_bias = None if logit_bias is None else logit_bias.detach()

    state = TrainerState()
    if resume_from is not None:
        state = load_checkpoint(accelerator, resume_from)
        accelerator.print(f"Resumed from {resume_from} at step {state.global_step}.")
    if config.report_to:
        accelerator.init_trackers("vop", config={k: _loggable(v) for k, v in config.to_dict().items()})
    accelerator.print(
        f"Training {adapter_config.variant} on {len(train_dataset)} samples: {schedule.total_steps} steps "
        f"({schedule.num_epochs} epoch{'s' if schedule.num_epochs != 1 else ''} of {schedule.steps_per_epoch}), {config.batch_size} videos per step over "
        f"{accelerator.num_processes} process(es) x {config.gradient_accumulation_steps} accumulation step(s), "
        f"{loader_settings.num_workers} loader worker(s) per process."
    )
    result = TrainingResult(output_dir, state.global_step, best_metric=state.best_metric, best_step=state.best_step)
    if eval_loaders is not None and config.eval_zero_shot and state.global_step == 0:
        result.zero_shot_metrics = evaluate_zero_shot(accelerator, encoder, eval_loaders, eval_data, config, state)
    logger = TrainingLogger(accelerator, config, schedule, state, scheduler)
    data_wait = DataWaitClock()

    # The loop. `state.epoch`/`state.batches_in_epoch` say where a resumed run picks up.
    encoder.train()
    for epoch in range(state.epoch, schedule.num_epochs):
        if state.global_step >= schedule.total_steps:
            break
        state.epoch = epoch
        for batch in data_wait.batches(epoch_batches(accelerator, train_loader, state)):
            batch = prepare_batch(batch)
            with accelerator.accumulate(encoder):
                loss = contrastive_step(accelerator, encoder, batch, logit_scale, logit_bias)
                if accelerator.sync_gradients and config.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state.batches_in_epoch += 1
            logger.add_loss(loss)
            if not accelerator.sync_gradients:
                continue

            state.global_step += 1
            window_loss = logger.step(epoch)
            if window_loss is not None:
                result.train_loss = window_loss
            at_epoch_end = state.batches_in_epoch == schedule.batches_per_epoch
            if at_epoch_end:
                state.epoch, state.batches_in_epoch = epoch + 1, 0
            with logger.paused(), data_wait.paused():  # evaluation and checkpoints are not training time
                if eval_loaders is not None and should_evaluate(config, state.global_step, at_epoch_end):
                    metrics = evaluate_and_keep_best(accelerator, encoder, eval_loaders, eval_data, config, state)
                    result.eval_history.append(metrics)
                    encoder.train()
                if should_checkpoint(config, state.global_step):
                    save_checkpoint(accelerator, output_dir, state, keep=config.checkpoints_total_limit)
            if state.global_step >= schedule.total_steps:
                break
        else:
            state.epoch, state.batches_in_epoch = epoch + 1, 0
    logger.close()
    data_wait.stop()
    result.data_wait_fraction = data_wait.fraction
    report_data_wait(accelerator, data_wait)
    if result.eval_history:
        warn_if_below_zero_shot(accelerator, config, state, result.eval_history[-1])

    # A finished run keeps its last state too, so that resuming it again is a no-op that re-exports the adapter.
    if not should_checkpoint(config, state.global_step):
        save_checkpoint(accelerator, output_dir, state, keep=config.checkpoints_total_limit)
    export_adapter(accelerator, encoder, output_dir)
    result.global_step, result.best_metric, result.best_step = state.global_step, state.best_metric, state.best_step
    accelerator.end_training()

    if config.push_to_hub and accelerator.is_main_process:
        repo_id = config.hub_model_id or output_dir.resolve().name
        accelerator.unwrap_model(encoder).model.push_to_hub(repo_id, private=config.hub_private_repo)
        accelerator.print(f"Pushed the adapter to https://huggingface.co/{repo_id}")
    return result


def prepare_output_dir(accelerator: Accelerator, config: TrainingConfig) -> None:
    """On the main process: empty the directory if asked to, drop half-written temporaries, write the config."""
    output_dir = Path(config.output_dir)
    if accelerator.is_main_process:
        if config.overwrite_output_dir:
            reset_output_dir(output_dir)
        remove_stale_temporaries(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        config.save(output_dir / CONFIG_NAME)
    accelerator.wait_for_everyone()


@dataclass(frozen=True)
class Schedule:
    """
    How many micro-batches, optimizer steps and epochs the run has.

    Args:
        batches_per_epoch (`int`): micro-batches (forward passes) per epoch.
        steps_per_epoch (`int`): optimizer steps per epoch.
        total_steps (`int`): optimizer steps of the whole run.
        num_epochs (`int`): epochs started (the last one may stop early at `max_steps`).
    """

    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    num_epochs: int

    @classmethod
    def of(cls, config: TrainingConfig, batches_per_epoch: int) -> Schedule:
        """The schedule of `config` with `batches_per_epoch` micro-batches per epoch."""
        steps_per_epoch = math.ceil(batches_per_epoch / config.gradient_accumulation_steps)
        total_steps = config.max_steps or config.num_train_epochs * steps_per_epoch
        return cls(batches_per_epoch, steps_per_epoch, total_steps, math.ceil(total_steps / steps_per_epoch))


def epoch_batches(accelerator: Accelerator, train_loader: DataLoader, state: TrainerState) -> DataLoader:
    """The loader of `state.epoch`, skipping the micro-batches a resumed run has already consumed."""
    loader = train_loader
    if state.batches_in_epoch:
        loader = accelerator.skip_first_batches(train_loader, state.batches_in_epoch)
    loader.set_epoch(state.epoch)  # the permutation and per-sample seeds of this epoch
    return loader


def should_evaluate(config: TrainingConfig, global_step: int, at_epoch_end: bool) -> bool:
    """Evaluate every `eval_steps` steps, or at the end of every epoch when `eval_steps` is not set."""
    if config.eval_steps is not None:
        return global_step % config.eval_steps == 0
    return at_epoch_end


def should_checkpoint(config: TrainingConfig, global_step: int) -> bool:
    """Save a resumable checkpoint every `checkpoint_steps` steps (never when it is not set)."""
    return config.checkpoint_steps is not None and global_step % config.checkpoint_steps == 0


def evaluate_and_keep_best(
    accelerator: Accelerator,
    encoder: torch.nn.Module,
    eval_loaders: tuple[DataLoader, DataLoader],
    eval_data: EvalData,
    config: TrainingConfig,
    state: TrainerState,
) -> dict[str, float]:
    """
    Evaluate retrieval, log and print the metrics, and export the adapter to `output_dir/best` when
    `metric_for_best_model` improved (recorded in `state.best_metric` and `state.best_step`).

    Returns:
        `dict[str, float]`: the metrics, with the `step` they were measured at.
    """
    metrics = evaluate_during_training(accelerator, encoder, eval_loaders, eval_data.caption_video)
    metrics["step"] = state.global_step
    accelerator.log({f"eval/{name}": value for name, value in metrics.items() if name != "step"}, state.global_step)
    summary = ", ".join(f"{name} {value:.2f}" for name, value in metrics.items() if name != "step")
    if accelerator.is_main_process:
        # On a line of its own above the progress bar, never glued to it.
        tqdm.write(f"eval on {config.eval_split or 'the given videos'} at step {state.global_step}: {summary}")
    value = metrics[config.metric_for_best_model]
    if is_better(config.metric_for_best_model, value, state.best_metric):
        state.best_metric, state.best_step = value, state.global_step
        export_adapter(accelerator, encoder, Path(config.output_dir) / BEST_DIR, metadata=metrics)
    return metrics


def evaluate_zero_shot(
    accelerator: Accelerator,
    encoder: torch.nn.Module,
    eval_loaders: tuple[DataLoader, DataLoader],
    eval_data: EvalData,
    config: TrainingConfig,
    state: TrainerState,
) -> dict[str, float]:
    """
    Evaluate the base model (the adapter disabled: frames mean-pooled, as zero-shot CLIP) before the first step, log
    the metrics at step 0 under `zero_shot/`, and record `metric_for_best_model` in `state.zero_shot_metric`.
    """
    with accelerator.unwrap_model(encoder).model.disable_adapter():
        metrics = evaluate_during_training(accelerator, encoder, eval_loaders, eval_data.caption_video)
    accelerator.log({f"zero_shot/{name}": value for name, value in metrics.items()}, step=0)
    summary = ", ".join(f"{name} {value:.2f}" for name, value in metrics.items())
    if accelerator.is_main_process:
        tqdm.write(f"eval on {config.eval_split or 'the given videos'}, zero-shot (adapter disabled): {summary}")
    state.zero_shot_metric = metrics[config.metric_for_best_model]
    return metrics


def warn_if_below_zero_shot(
    accelerator: Accelerator, config: TrainingConfig, state: TrainerState, last: dict[str, float]
) -> None:
    """Warn when the last evaluation of the adapter is worse than the base model on `metric_for_best_model`."""
    metric = config.metric_for_best_model
    if state.zero_shot_metric is None or metric not in last or not accelerator.is_main_process:
        return
    if last[metric] == state.zero_shot_metric or is_better(metric, last[metric], state.zero_shot_metric):
        return
    best = ""
    if state.best_metric is not None and is_better(metric, state.best_metric, state.zero_shot_metric):
        best = f" The best evaluated adapter (step {state.best_step}, {state.best_metric:.2f}) is in {BEST_DIR}/."
    warnings.warn(
        f"After {state.global_step} steps the adapter's validation {metric} is {last[metric]:.2f}, below zero-shot "
        f"({state.zero_shot_metric:.2f}): the run is too short for its learning rate ({config.learning_rate:g}), or "
        f"the learning rate is too high for this data. Train longer or with a lower --learning_rate.{best}",
        stacklevel=4,  # the caller of `train` (through its signal-handling wrapper)
    )


class TrainingLogger:
    """
    Sends the mean loss, learning rate, throughput and epoch of every `logging_steps` window to the trackers and
    the progress bar.

    Args:
        accelerator (`accelerate.Accelerator`): logs to the run's trackers.
        config ([`TrainingConfig`]): gives `logging_steps`, `batch_size` and `disable_tqdm`.
        schedule ([`Schedule`]): gives the total steps and the batches per epoch.
        state ([`TrainerState`]): where the run stands (read, never written).
        scheduler (`torch.optim.lr_scheduler.LRScheduler`): gives the learning rate.
    """

    def __init__(
        self, accelerator: Accelerator, config: TrainingConfig, schedule: Schedule, state: TrainerState, scheduler
    ) -> None:
        self.accelerator = accelerator
        self.config = config
        self.schedule = schedule
        self.state = state
        self.scheduler = scheduler
        self.progress = tqdm(
            total=schedule.total_steps,
            initial=state.global_step,
            desc="train",
            disable=config.disable_tqdm or not accelerator.is_local_main_process,
        )
        self.loss = torch.zeros((), device=accelerator.device)
        self.batches = self.steps = 0
        self.start = time.perf_counter()

    def add_loss(self, loss: torch.Tensor) -> None:
        """Add the loss of one micro-batch to the window (on the device, without synchronising)."""
        self.loss += loss
        self.batches += 1

    def step(self, epoch: int) -> float | None:
        """
        Count the optimizer step `state.global_step`; at the end of a window, log the window and start the next.

        Returns:
            `float`: the window's mean loss when it was logged, else `None`.
        """
        self.steps += 1
        self.progress.update(1)
        step = self.state.global_step
        if step % self.config.logging_steps and step != self.schedule.total_steps:
            return None
        loss = (self.loss / self.batches).item()
        logs = {
            "train/loss": loss,
            "train/learning_rate": self.scheduler.get_last_lr()[0],
            "train/videos_per_second": self.steps * self.config.batch_size / (time.perf_counter() - self.start),
            "train/epoch": epoch + self.state.batches_in_epoch / self.schedule.batches_per_epoch,
        }
        self.accelerator.log(logs, step=step)
        self.progress.set_postfix(loss=f"{loss:.4f}", videos_s=f"{logs['train/videos_per_second']:.1f}")
        self.loss.zero_()
        self.batches = self.steps = 0
        self.start = time.perf_counter()
        return loss

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time spent inside this block out of the throughput."""
        paused = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - paused

    def close(self) -> None:
        """Close the progress bar."""
        self.progress.close()


# Above this part of the training time spent waiting for batches, `vop train` warns.
DATA_WAIT_WARNING = 0.10


def report_data_wait(accelerator: Accelerator, data_wait: DataWaitClock) -> None:
    """Print how long the step waited for data, and warn, saying what helps, when that was a large part."""
    if data_wait.fraction is None:
        return
    accelerator.print(
        f"The step waited for data {100 * data_wait.fraction:.1f}% of the training time "
        f"({data_wait.waited:.1f} s of {data_wait.elapsed:.1f} s)."
    )
    if data_wait.fraction > DATA_WAIT_WARNING and accelerator.is_local_main_process:
        warnings.warn(
            f"Training waited for data {100 * data_wait.fraction:.0f}% of the time. Build a frame cache with "
            "`vop prepare` and train with `--frame_cache`, or give the loader more workers (`--num_workers`).",
            stacklevel=4,  # the caller of `train` (through its signal-handling wrapper)
        )


def check_distributed_engine() -> None:
    """
    Refuse FSDP and DeepSpeed (set by `accelerate launch` from an accelerate config): never run with VoP, and not
    needed for a frozen backbone with ~0.1% trainable parameters. DDP (`distributed_type: MULTI_GPU`, or
    `accelerate launch --multi_gpu`) is the tested engine.
    """
    for engine, variable in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED")):
        if parse_flag_from_env(variable):
            raise ConfigurationError(
                f"`vop train` does not run under {engine} (the accelerate config sets {variable}=true): it has not "
                "been verified with VoP, and a frozen backbone whose prompts are ~0.1% of the parameters does not "
                "need sharding. Use DDP: `accelerate launch --multi_gpu` or an accelerate config with "
                "`distributed_type: MULTI_GPU` (see docs/training.md, 'Several processes')."
            )


def check_model_fits(model_name_or_path: str, adapter_config) -> None:
    """
    Check, from the checkpoint's config alone (no weights), that it is a supported dual encoder and that the adapter
    fits it: VoP^F's split must leave at least one inter-frame layer.

    Args:
        model_name_or_path (`str`): the CLIP, MetaCLIP 2, SigLIP or SigLIP 2 checkpoint.
        adapter_config (`peft_vop.VoPConfig`): the adapter to add.
    """
    checkpoint_family(model_name_or_path)
    depth = AutoConfig.from_pretrained(model_name_or_path).vision_config.num_hidden_layers
    if adapter_config.intra_frame_layers is not None and adapter_config.intra_frame_layers >= depth:
        raise ValueError(
            f"`intra_frame_layers` is {adapter_config.intra_frame_layers} but {model_name_or_path!r} has {depth} vision "
            f"layers; VoP^F needs 1..{depth - 1} (--adapter_options '{{intra_frame_layers: {max(1, depth * 2 // 3)}}}', "
            "or `adapter_options: {intra_frame_layers: ...}` in a config file)."
        )


def check_batching(config: TrainingConfig, num_samples: int, num_processes: int) -> int:
    """
    Check that the global batch splits into equal forward passes on every process and that the data fills one.

    Returns:
        `int`: videos per forward pass over all processes together (`batch_size / gradient_accumulation_steps`).
    """
    micro_batch = config.batch_size // config.gradient_accumulation_steps
    if micro_batch % num_processes:
        raise ValueError(
            f"`batch_size / gradient_accumulation_steps` = {micro_batch} videos per forward pass cannot be split "
            f"evenly over {num_processes} processes; choose a multiple of {num_processes}."
        )
    if num_samples < micro_batch:
        raise ValueError(
            f"The training split has {num_samples} samples, fewer than one forward pass of {micro_batch} "
            "(`batch_size / gradient_accumulation_steps`); lower `batch_size` or use more data."
        )
    return micro_batch


def _loggable(value: Any) -> Any:
    # Trackers take scalars and strings in their hyper-parameter tables.
    return value if isinstance(value, (int, float, str, bool)) else str(value)
