"""A run killed with SIGKILL and resumed from its last checkpoint ends with the same adapter, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.tiny_run import base_config
from safetensors.torch import load_file

from peft_vop.training.checkpointing import STATE_NAME, latest_checkpoint


SCRIPT = Path(__file__).with_name("resumable_run.py")
REPO = Path(__file__).parents[2]


def run(config_file: Path, kill_after: int | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), str(config_file)] + ([str(kill_after)] if kill_after is not None else [])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def write_config(path: Path, **values) -> Path:
    path.write_text(json.dumps(values))
    return path


@pytest.mark.slow
def test_killed_run_resumes_onto_the_same_trajectory(tmp_path):
    # 16 videos, 2 per forward pass, 2 passes per step: 4 steps per epoch, 12 steps; checkpoints at 5 and 10.
    recipe = base_config(
        tmp_path,
        variant="vop_p",
        batch_size=4,
        gradient_accumulation_steps=2,
        num_train_epochs=3,
        checkpoint_steps=5,
        checkpoints_total_limit=None,
    ).to_dict()
    reference = write_config(tmp_path / "reference.json", **{**recipe, "output_dir": str(tmp_path / "reference")})
    completed = run(reference)
    assert completed.returncode == 0, completed.stderr[-3000:]

    interrupted_dir = tmp_path / "interrupted"
    interrupted = write_config(tmp_path / "interrupted.json", **{**recipe, "output_dir": str(interrupted_dir)})
    # Killed while collating the 16th forward pass: step 7 of epoch 1 half-accumulated, last checkpoint at step 5
    # (epoch 1, 2 passes in).
    killed = run(interrupted, kill_after=15)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert latest_checkpoint(interrupted_dir).name == "step-00000005"
    assert not (interrupted_dir / "adapter_model.safetensors").exists()

    resumed_config = write_config(
        tmp_path / "resumed.json", **{**recipe, "output_dir": str(interrupted_dir), "resume_from_checkpoint": "latest"}
    )
    resumed = run(resumed_config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout + resumed.stderr

    expected = load_file(tmp_path / "reference" / "adapter_model.safetensors")
    got = load_file(interrupted_dir / "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after resuming"
    state = json.loads((latest_checkpoint(interrupted_dir) / STATE_NAME).read_text())
    assert state["global_step"] == 12


def test_half_written_checkpoint_is_never_resumed(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "step-00000004").mkdir(parents=True)
    (checkpoints / "step-00000004" / STATE_NAME).write_text("{}")
    (checkpoints / ".tmp-step-00000008").mkdir()  # a run killed while saving step 8
    (checkpoints / ".tmp-step-00000008" / STATE_NAME).write_text("{}")
    (checkpoints / "step-00000012").mkdir()  # not complete: no trainer state
    assert latest_checkpoint(tmp_path).name == "step-00000004"


@pytest.mark.parametrize("change", [{"learning_rate": 0.5}, {"variant": "vop"}, {"batch_size": 8}])
def test_resuming_under_another_recipe_fails_at_start(tmp_path, change):
    from peft_vop.training import TrainingConfig
    from peft_vop.training.checkpointing import CONFIG_NAME, check_output_dir

    config = base_config(tmp_path, variant="vop_p")
    Path(config.output_dir).mkdir()
    config.save(Path(config.output_dir) / CONFIG_NAME)
    resumed = TrainingConfig(**{**config.to_dict(), **change, "resume_from_checkpoint": "latest"})
    with pytest.raises(ValueError, match=f"different recipe.*{next(iter(change))}"):
        check_output_dir(resumed)
    # Logging and checkpoint cadence may change.
    check_output_dir(TrainingConfig(**{**config.to_dict(), "logging_steps": 7, "resume_from_checkpoint": "latest"}))
