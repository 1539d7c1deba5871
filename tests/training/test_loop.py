"""The training loop: schedule, mixed precision, accumulation, evaluation and the best adapter, resuming."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file
from tiny_run import TinyVideoCaptions, base_config, collate, tiny_eval_data

from peft_vop.training import train
from peft_vop.training.loop import default_workers


@pytest.fixture
def fresh_accelerate_state():
    # accelerate keeps one mixed-precision setting per process; tests before this one ran without.
    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


def test_bf16_with_gradient_accumulation_and_max_steps(tmp_path, fresh_accelerate_state):
    # 16 videos, 2 per forward pass, 2 passes per step: max_steps=5 ends inside the second epoch.
    config = base_config(
        tmp_path, mixed_precision="bf16", batch_size=4, gradient_accumulation_steps=2, max_steps=5, variant="vop_f"
    )
    config.adapter_options = {"intra_frame_layers": 2}
    result = train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate)
    assert result.global_step == 5
    assert math.isfinite(result.train_loss)
    state = json.loads((Path(config.output_dir) / "checkpoints" / "step-00000005" / "trainer_state.json").read_text())
    assert state == {"global_step": 5, "epoch": 1, "batches_in_epoch": 2, "best_metric": None, "best_step": None}


def test_periodic_evaluation_keeps_the_best_adapter(tmp_path):
    source = TinyVideoCaptions()
    config = base_config(
        tmp_path, eval_steps=2, num_train_epochs=2, metric_for_best_model="t2v/MnR", learning_rate=0.05
    )
    result = train(config, train_dataset=source, eval_data=tiny_eval_data(source), collate_fn=collate)
    steps = [entry["step"] for entry in result.eval_history]
    assert steps == [2, 4, 6, 8]
    assert all(entry["t2v/R@1"] >= 0 and entry["v2t/MdR"] >= 1 for entry in result.eval_history)
    best = min(result.eval_history, key=lambda entry: (entry["t2v/MnR"], entry["step"]))  # lower is better
    assert (result.best_metric, result.best_step) == (best["t2v/MnR"], best["step"])
    saved = json.loads((Path(config.output_dir) / "best" / "eval_results.json").read_text())
    assert saved["step"] == result.best_step


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    config = base_config(tmp_path, num_train_epochs=1, checkpoint_steps=2)
    first = train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate)
    adapter = load_file(Path(config.output_dir) / "adapter_model.safetensors")
    config.resume_from_checkpoint = "latest"
    again = train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate)
    assert again.global_step == first.global_step == 4
    assert all(
        torch.equal(value, load_file(Path(config.output_dir) / "adapter_model.safetensors")[name])
        for name, value in adapter.items()
    )
    assert sorted(path.name for path in (Path(config.output_dir) / "checkpoints").iterdir()) == [
        "step-00000002",
        "step-00000004",
    ]


def test_loader_workers_default_to_none_for_cached_frames_on_cpus():
    assert default_workers(None, use_cpu=True, cached=True) == 0
    assert default_workers(None, use_cpu=True, cached=False) == 2
    assert default_workers(None, use_cpu=False, cached=True) == 2
    assert default_workers(5, use_cpu=True, cached=True) == 5


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_the_progress_bar_can_be_hidden(tmp_path, capfd, disable_tqdm):
    config = base_config(tmp_path, num_train_epochs=1, disable_tqdm=disable_tqdm)
    train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate)
    err = capfd.readouterr().err
    assert ("train: 100%" in err) is not disable_tqdm
