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

Every write here goes through `peft_vop._atomic`: a checkpoint is built in a hidden `.step-N.saving-run` directory
and swapped into place whole, an old one is renamed away before it is deleted, and the adapters are swapped in as
whole directories. A kill at any instant therefore leaves only complete checkpoints, and the newest complete one
survives (docs/reliability.md lists the guarantees). SIGINT and SIGTERM stop a run through [`stops_on_signals`].
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState

from .._atomic import (
    check_writable,
    clean_up,
    fsync_tree,
    remove_directory,
    replace_directory,
    replacing_directory,
    write_json,
)
from .config import RESUME_LATEST, TrainingConfig


CONFIG_NAME = "training_config.json"
STATE_NAME = "trainer_state.json"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
LOGS_DIR = "logs"
ADAPTER_DIR = "adapter"
EVAL_RESULTS_NAME = "eval_results.json"
_CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
# Temporaries of peft-vop < 0.2 (renamed checkpoints): `.tmp-step-N` (being written), `.tmp-old-step-N` (replaced).
_LEGACY_PREFIX, _LEGACY_OLD_PREFIX = ".tmp-", ".tmp-old-"


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
        zero_shot_metric (`float`, *optional*): `metric_for_best_model` of the base model (adapter disabled),
            measured before the first step.
    """

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    zero_shot_metric: float | None = None

    def save(self, directory: str | os.PathLike) -> None:
        """Write the state as `trainer_state.json` into `directory`."""
        write_json(Path(directory, STATE_NAME), dataclasses.asdict(self))

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

    The directory and its parent must accept new files. A checkpoint that an interrupted re-save left aside is put
    back first. Whenever checkpoints exist but the run starts from step 0, a line says why.

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
    check_writable(output_dir)
    processes = PartialState()
    if processes.is_main_process and (output_dir / CONFIG_NAME).is_file():  # only ever touch a run's own files
        for line in _recover_checkpoints(output_dir / CHECKPOINTS_DIR):
            processes.print(f"{output_dir / CHECKPOINTS_DIR}: {line}")
    processes.wait_for_everyone()
    contents = sorted(path.name for path in output_dir.iterdir()) if output_dir.is_dir() else []
    if not contents or config.overwrite_output_dir:
        existing = _checkpoints(output_dir / CHECKPOINTS_DIR)
        if existing and config.overwrite_output_dir:
            processes.print(
                f"`overwrite_output_dir` is set: the {len(existing)} checkpoint(s) of the earlier run in "
                f"{output_dir} (newest {existing[-1].name}) are deleted and training starts from step 0."
            )
        if resume == RESUME_LATEST or resume is None:
            if resume == RESUME_LATEST and not config.overwrite_output_dir:
                processes.print(f"No checkpoint in {output_dir} yet: starting from step 0.")
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
        latest = latest_checkpoint(output_dir)
        if latest is None:
            processes.print(f"Starting from step 0: {_why_no_checkpoint(output_dir / CHECKPOINTS_DIR)}")
        return latest
    return Path(resume)


def _why_no_checkpoint(checkpoints_dir: Path) -> str:
    if not checkpoints_dir.is_dir() or not any(checkpoints_dir.iterdir()):
        return f"there is no checkpoint in {checkpoints_dir} yet."
    incomplete = sorted(path.name for path in checkpoints_dir.iterdir() if not (path / STATE_NAME).is_file())
    return (
        f"{checkpoints_dir} holds no complete checkpoint (no {STATE_NAME} in {incomplete[:5]}, left by a run that "
        "was killed while writing or deleting them)."
    )


def reset_output_dir(output_dir: str | os.PathLike) -> None:
    """Delete the checkpoints, best adapter and config of an earlier run in `output_dir` (for `overwrite_output_dir`)."""
    output_dir = Path(output_dir)
    for name in (CHECKPOINTS_DIR, BEST_DIR):
        shutil.rmtree(output_dir / name, ignore_errors=True)
    (output_dir / CONFIG_NAME).unlink(missing_ok=True)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """
    The complete checkpoint of `output_dir` with the highest step, or `None`.

    Checkpoints are written under a hidden temporary name and renamed when complete, so a run killed while saving
    leaves a `.step-N.saving-*` directory that is never picked.
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
    # One name on every process (a process id would differ); a leftover is removed at the next start.
    final, staging = checkpoints_dir / name, checkpoints_dir / f".{name}.saving-run"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(staging))
        if accelerator.is_main_process:
            state.save(staging)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            fsync_tree(staging)
            # Re-saving a step after resuming from an earlier checkpoint swaps the two in one step, so one complete
            # `step-N` exists at every instant.
            replace_directory(staging, final)
            if keep is not None:
                for old in _checkpoints(checkpoints_dir)[:-keep]:
                    remove_directory(old)  # renamed away first: never a half-deleted `step-N`
    finally:
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
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
    """Delete the half-written checkpoints and adapters that a killed run left behind (main process only)."""
    output_dir = Path(output_dir)
    _recover_checkpoints(output_dir / CHECKPOINTS_DIR, all_owners=True)
    clean_up(output_dir.parent, only=output_dir.name)
    clean_up(output_dir, only=BEST_DIR)


def _recover_checkpoints(checkpoints_dir: Path, all_owners: bool = False) -> list[str]:
    """Put back checkpoints that an interrupted swap left aside, and remove temporaries; returns what was done."""
    done = clean_up(checkpoints_dir, all_owners=all_owners)
    if checkpoints_dir.is_dir():
        for path in sorted(checkpoints_dir.iterdir()):
            if path.name.startswith(_LEGACY_OLD_PREFIX) and (path / STATE_NAME).is_file():
                final = checkpoints_dir / path.name.removeprefix(_LEGACY_OLD_PREFIX)
                if not final.exists():
                    os.rename(path, final)
                    done.append(f"restored {final.name} from an interrupted save")
                    continue
            if path.name.startswith(_LEGACY_PREFIX):
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path.name}")
    return done


class TrainingInterrupted(KeyboardInterrupt):
    """
    A run stopped by SIGINT (Ctrl-C) or SIGTERM; only complete checkpoints are left.

    Args:
        signal_number (`int`): the signal.
        exit_code (`int`): the conventional exit status, 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


def stops_on_signals(train: Callable) -> Callable:
    """
    Make `train(config, ...)` stop cleanly on SIGINT or SIGTERM: the write in progress is abandoned (its staging
    directory removed, the previous complete checkpoint or adapter left in place), further signals are ignored
    while that cleanup runs, a line says how to resume, and [`TrainingInterrupted`] (a `KeyboardInterrupt`) is
    raised with the exit status `vop train` returns (130 or 143).
    """

    @functools.wraps(train)
    def wrapper(config: TrainingConfig, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            return train(config, *args, **kwargs)
        received: list[int] = []

        def stop(signal_number: int, frame) -> None:
            if received:  # the first signal is being handled: let its cleanup finish
                return
            received.append(signal_number)
            raise TrainingInterrupted(signal_number)

        previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            return train(config, *args, **kwargs)
        except KeyboardInterrupt as error:
            received.append(signal.SIGINT)  # from here on, signals are ignored until the handlers are restored
            interrupted = error if isinstance(error, TrainingInterrupted) else TrainingInterrupted(signal.SIGINT)
            processes = PartialState()
            if processes.is_main_process:  # what the abandoned write left: a staging or half-deleted directory
                _recover_checkpoints(Path(config.output_dir) / CHECKPOINTS_DIR, all_owners=True)
            processes.print(_resume_hint(config, interrupted), file=sys.stderr, flush=True)
            raise interrupted from None
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    return wrapper


def _resume_hint(config: TrainingConfig, interrupted: TrainingInterrupted) -> str:
    latest = latest_checkpoint(config.output_dir)
    name = signal.Signals(interrupted.signal_number).name
    if latest is None:
        return f"Training stopped by {name}; no checkpoint was written yet, so a new run starts from step 0."
    step = TrainerState.load(latest).global_step
    return (
        f"Training stopped by {name}. The newest complete checkpoint is {latest} (step {step}); continue the run "
        "with the same command and `--resume-from-checkpoint latest`."
    )


def export_adapter(
    accelerator: Accelerator,
    encoder: torch.nn.Module,
    directory: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
) -> None:
    """
    Save the adapter of a prepared [`VideoTextEncoder`] with peft's `save_pretrained` (which peft-vop makes atomic
    as a whole). Call on every process: FSDP and DeepSpeed gather the sharded weights collectively.

    Args:
        accelerator (`accelerate.Accelerator`): the run's accelerator.
        encoder (`torch.nn.Module`): the prepared encoder wrapping the VoP `PeftModel`.
        directory (`str` or `os.PathLike`): where the adapter goes.
        metadata (`dict`, *optional*): written next to the adapter as `eval_results.json`.
    """
    state_dict = accelerator.get_state_dict(encoder)  # collective under FSDP / DeepSpeed ZeRO-3
    if accelerator.is_main_process:
        peft_state_dict = {key.removeprefix("model."): value for key, value in state_dict.items()}
        # Adapter and metrics are swapped in together: `eval_results.json` always describes the weights beside it.
        with replacing_directory(directory) as staging:
            accelerator.unwrap_model(encoder).model.save_pretrained(staging, state_dict=peft_state_dict)
            if metadata is not None:
                write_json(staging / EVAL_RESULTS_NAME, metadata)
    accelerator.wait_for_everyone()
