"""The run directory: refusing to mix runs, atomic resumable checkpoints, and adapter export.

Layout of `output_dir`:

```
output_dir/
├── training_config.json          the resolved config of the run (written before training starts)
├── adapter_config.json           the final adapter (`save_pretrained`), written at the end
├── adapter_model.safetensors
├── best/                         the best adapter by `metric_for_best_model`, with `eval_results.json`
├── checkpoints/step-00000500/    resumable state: accelerate's `save_state` + adapter/ + trainer_state.json
└── logs/                         tracker output (TensorBoard event files, ...)
```
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from .config import RESUME_LATEST, TrainingConfig


CONFIG_NAME = "training_config.json"
STATE_NAME = "trainer_state.json"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
LOGS_DIR = "logs"
ADAPTER_DIR = "adapter"
EVAL_RESULTS_NAME = "eval_results.json"
_CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
_TEMP_PREFIX = ".tmp-"


@dataclass
class TrainerState:
    """
    Where a run stands; saved as `trainer_state.json` in every checkpoint.

    Args:
        global_step (`int`): optimizer steps taken.
        epoch (`int`): epoch that the next batch belongs to.
        batches_in_epoch (`int`): micro-batches of `epoch` already consumed (on each process).
        best_metric (`float`, *optional*): best value of `metric_for_best_model` so far.
        best_step (`int`, *optional*): step at which `best_metric` was measured.
    """

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None

    def save(self, directory: str | os.PathLike) -> None:
        """Write the state as `trainer_state.json` into `directory`."""
        Path(directory, STATE_NAME).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TrainerState:
        """Read the `trainer_state.json` of a checkpoint directory."""
        return cls(**json.loads(Path(directory, STATE_NAME).read_text()))


def check_output_dir(config: TrainingConfig) -> Path | None:
    """
    Decide, before anything expensive happens, whether `config.output_dir` may be used, and which checkpoint to
    resume from.

    The directory may be absent or empty; hold this same run (same trajectory fields in `training_config.json`) when
    `resume_from_checkpoint` is set; or hold anything when `overwrite_output_dir` is set, in which case the
    checkpoints and best adapter of the old run are deleted by [`reset_output_dir`].

    Args:
        config ([`TrainingConfig`]): the run's config.

    Returns:
        `Path` or `None`: the checkpoint to resume from, or `None` to start from step 0.
    """
    output_dir = Path(config.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"`output_dir` {str(output_dir)!r} exists and is not a directory.")
    resume = config.resume_from_checkpoint
    if resume is not None and resume != RESUME_LATEST:
        checkpoint = Path(resume)
        if not (checkpoint / STATE_NAME).is_file():
            raise ValueError(
                f"`resume_from_checkpoint` {resume!r} is not a checkpoint (no {STATE_NAME}); pass 'latest' or a "
                f"directory like {str(output_dir / CHECKPOINTS_DIR / 'step-00000500')!r}."
            )
    contents = sorted(path.name for path in output_dir.iterdir()) if output_dir.is_dir() else []
    if not contents or config.overwrite_output_dir:
        if resume == RESUME_LATEST or resume is None:
            return None
        return Path(resume)

    saved_config = output_dir / CONFIG_NAME
    if not saved_config.is_file():
        raise ValueError(
            f"`output_dir` {str(output_dir)!r} is not empty and holds no {CONFIG_NAME} (found {contents[:5]}): it is "
            "not a `vop train` run. Choose another directory, or set `overwrite_output_dir` to write into it anyway."
        )
    if resume is None:
        raise ValueError(
            f"`output_dir` {str(output_dir)!r} already holds a training run. Set `resume_from_checkpoint: latest` "
            "(`--resume-from-checkpoint latest`) to continue it, `overwrite_output_dir` to replace it, or choose "
            "another directory."
        )
    previous = TrainingConfig.from_dict(json.loads(saved_config.read_text())).trajectory_fields()
    current = config.trajectory_fields()
    changed = {key: (previous.get(key), value) for key, value in current.items() if previous.get(key) != value}
    if changed:
        details = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in sorted(changed.items()))
        raise ValueError(
            f"Cannot resume the run in {str(output_dir)!r} under a different recipe ({details}); resume with the "
            "run's own config, or start a new run in another directory."
        )
    if resume == RESUME_LATEST:
        return latest_checkpoint(output_dir)
    return Path(resume)


def reset_output_dir(output_dir: str | os.PathLike) -> None:
    """Delete the checkpoints, best adapter and config of an earlier run in `output_dir` (for `overwrite_output_dir`)."""
    output_dir = Path(output_dir)
    for name in (CHECKPOINTS_DIR, BEST_DIR):
        shutil.rmtree(output_dir / name, ignore_errors=True)
    (output_dir / CONFIG_NAME).unlink(missing_ok=True)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """
    The complete checkpoint of `output_dir` with the highest step, or `None`.

    Checkpoints are written under a temporary name and renamed when complete, so a run killed while saving leaves
    a `.tmp-*` directory that is never picked.
    """
    checkpoints = _checkpoints(Path(output_dir) / CHECKPOINTS_DIR)
    return checkpoints[-1] if checkpoints else None


def _checkpoints(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    found = [
        (int(match.group(1)), path)
        for path in directory.iterdir()
        if (match := _CHECKPOINT_PATTERN.match(path.name)) and (path / STATE_NAME).is_file()
    ]
    return [path for _, path in sorted(found)]


def register_adapter_hooks(accelerator: Accelerator) -> None:
    """
    Make `accelerator.save_state`/`load_state` store the adapter (via peft's `save_pretrained`) instead of the
    whole model's state, which would copy every frozen CLIP weight into each checkpoint.

    Applies to models whose state accelerate would save itself (single process, DDP); FSDP and DeepSpeed save
    their (sharded) model state their own way and are left alone.
    """

    def save_adapter(models: list, weights: list, output_dir: str) -> None:
        if not weights:  # FSDP / DeepSpeed: the plugin already saved the model
            return
        for model in models:
            accelerator.unwrap_model(model).model.save_pretrained(
                Path(output_dir, ADAPTER_DIR), is_main_process=accelerator.is_main_process
            )
        weights.clear()

    def load_adapter(models: list, input_dir: str) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        for model in models:
            peft_model = accelerator.unwrap_model(model).model
            state_dict = load_file(Path(input_dir, ADAPTER_DIR, "adapter_model.safetensors"))
            set_peft_model_state_dict(peft_model, state_dict)
        models.clear()

    accelerator.register_save_state_pre_hook(save_adapter)
    accelerator.register_load_state_pre_hook(load_adapter)


def save_checkpoint(
    accelerator: Accelerator, output_dir: str | os.PathLike, state: TrainerState, keep: int | None
) -> Path:
    """
    Write a resumable checkpoint of the run atomically: everything goes to `checkpoints/.tmp-step-N/`, which is
    renamed to `checkpoints/step-N/` once every process has finished writing. Call on every process.

    Args:
        accelerator (`accelerate.Accelerator`): the run's accelerator; its `save_state` writes the optimizer,
            scheduler, gradient scaler and every process's RNG states, and (through [`register_adapter_hooks`])
            the adapter.
        output_dir (`str` or `os.PathLike`): the run directory.
        state ([`TrainerState`]): where the run stands (step, epoch, position in the epoch, best metric).
        keep (`int`, *optional*): keep only the newest `keep` checkpoints.

    Returns:
        `Path`: the checkpoint directory.
    """
    checkpoints_dir = Path(output_dir) / CHECKPOINTS_DIR
    name = f"step-{state.global_step:08d}"
    final, temporary = checkpoints_dir / name, checkpoints_dir / f"{_TEMP_PREFIX}{name}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    if accelerator.is_main_process:
        state.save(temporary)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _sync_tree(temporary)
        if final.exists():  # re-saving a step after resuming from an earlier checkpoint
            stale = checkpoints_dir / f"{_TEMP_PREFIX}old-{name}"
            os.replace(final, stale)
            os.replace(temporary, final)
            shutil.rmtree(stale)
        else:
            os.replace(temporary, final)
        _fsync_directory(checkpoints_dir)
        if keep is not None:
            for old in _checkpoints(checkpoints_dir)[:-keep]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, checkpoint: str | os.PathLike) -> TrainerState:
    """
    Restore adapter, optimizer, scheduler, scaler and RNG states from a checkpoint written by [`save_checkpoint`].

    Returns:
        [`TrainerState`]: where the interrupted run stood.
    """
    accelerator.load_state(str(checkpoint))
    return TrainerState.load(checkpoint)


def remove_stale_temporaries(output_dir: str | os.PathLike) -> None:
    """Delete half-written checkpoints that a killed run left behind."""
    checkpoints_dir = Path(output_dir) / CHECKPOINTS_DIR
    if checkpoints_dir.is_dir():
        for path in checkpoints_dir.iterdir():
            if path.name.startswith(_TEMP_PREFIX):
                shutil.rmtree(path, ignore_errors=True)


def export_adapter(
    accelerator: Accelerator,
    encoder: torch.nn.Module,
    directory: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
) -> None:
    """
    Save the adapter of a prepared [`VideoTextEncoder`] with peft's `save_pretrained` (which peft-vop makes atomic
    per file). Call on every process: FSDP and DeepSpeed gather the sharded weights collectively.

    Args:
        accelerator (`accelerate.Accelerator`): the run's accelerator.
        encoder (`torch.nn.Module`): the prepared encoder wrapping the VoP `PeftModel`.
        directory (`str` or `os.PathLike`): where the adapter goes.
        metadata (`dict`, *optional*): written next to the adapter as `eval_results.json`.
    """
    state_dict = accelerator.get_state_dict(encoder)  # collective under FSDP / DeepSpeed ZeRO-3
    if accelerator.is_main_process:
        directory = Path(directory)
        peft_state_dict = {key.removeprefix("model."): value for key, value in state_dict.items()}
        accelerator.unwrap_model(encoder).model.save_pretrained(directory, state_dict=peft_state_dict)
        if metadata is not None:
            temporary = directory / f"{_TEMP_PREFIX}{EVAL_RESULTS_NAME}"
            temporary.write_text(json.dumps(metadata, indent=2) + "\n")
            os.replace(temporary, directory / EVAL_RESULTS_NAME)
    accelerator.wait_for_everyone()


def _sync_tree(directory: Path) -> None:
    # The rename only makes a checkpoint visible once complete; fsync makes "complete" survive a power cut too.
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
