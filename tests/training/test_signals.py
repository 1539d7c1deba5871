"""SIGINT / SIGTERM during `vop train`: a clean stop, only complete checkpoints, a resume hint, exit 130 / 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.tiny_run import tiny_world, world_clip_dir

from peft_vop.training.checkpointing import STATE_NAME, latest_checkpoint


REPO = Path(__file__).parents[2]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    "OMP_NUM_THREADS": "1",
}


def write_config(tmp_path: Path, **overrides) -> Path:
    values = {
        "model_name_or_path": str(world_clip_dir()),
        "annotations": str(tiny_world()),
        "output_dir": str(tmp_path / "run"),
        "eval_split": None,
        "variant": "vop_p",
        "num_frames": 4,
        "batch_size": 4,
        "max_steps": 30,  # more than the test lets the first run take
        "num_workers": 0,
        "logging_steps": 1,
        "checkpoint_steps": 1,
        "checkpoints_total_limit": 2,
        "disable_tqdm": True,
    }
    values.update(overrides)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def assert_only_complete_checkpoints(run: Path) -> None:
    checkpoints = run / "checkpoints"
    names = sorted(path.name for path in checkpoints.iterdir())
    assert names and all(name.startswith("step-") for name in names), names  # no half-written or hidden leftovers
    for name in names:
        assert (checkpoints / name / STATE_NAME).is_file() and (checkpoints / name / "adapter").is_dir(), name


@pytest.mark.slow
@pytest.mark.parametrize(("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_vop_train_stops_cleanly_on_a_signal_and_resumes(tmp_path, signal_number, exit_code):
    config = write_config(tmp_path)
    command = [sys.executable, "-m", "peft_vop.cli.main", "train", "--config", str(config)]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "run"
    deadline = time.monotonic() + 300
    while latest_checkpoint(run) is None or latest_checkpoint(run).name < "step-00000003":
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal_number)
    out, err = process.communicate(timeout=120)
    assert process.returncode == exit_code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert f"Training stopped by {signal.Signals(signal_number).name}" in err
    assert "--resume-from-checkpoint latest" in err
    assert_only_complete_checkpoints(run)
    stopped_at = latest_checkpoint(run)
    assert str(stopped_at) in err

    resumed = subprocess.run(
        [*command, "--resume-from-checkpoint", "latest"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed from {stopped_at}" in resumed.stdout
    assert (run / "adapter_model.safetensors").is_file() and latest_checkpoint(run).name == "step-00000030"


SCRIPT = """
import os, signal, sys
from peft_vop.training import TrainingConfig, load_config_file, train
from peft_vop.training import checkpointing
from peft_vop.training.checkpointing import TrainingInterrupted

save = checkpointing.TrainerState.save

def save_then_signal(self, directory):
    save(self, directory)
    if self.global_step == 2:  # inside the checkpoint write, before it is swapped into place
        os.kill(os.getpid(), signal.SIGINT)

checkpointing.TrainerState.save = save_then_signal
try:
    train(TrainingConfig.from_dict(load_config_file(sys.argv[1])))
except TrainingInterrupted as error:
    sys.exit(error.exit_code)
"""


@pytest.mark.slow
def test_a_signal_inside_a_checkpoint_write_abandons_it(tmp_path):
    config = write_config(tmp_path, checkpoints_total_limit=None)
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config)], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 130, completed.stderr[-3000:]
    run = tmp_path / "run"
    assert_only_complete_checkpoints(run)
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["step-00000001"]
    assert "newest complete checkpoint is" in completed.stderr and "step-00000001 (step 1)" in completed.stderr
