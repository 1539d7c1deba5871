"""The training loop: schedule, mixed precision, accumulation, evaluation and the best adapter, resuming."""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from helpers.tiny_run import TinyVideoCaptions, base_config, collate, tiny_eval_data, tiny_world, world_clip_dir
from safetensors.torch import load_file
from transformers import CLIPModel

from peft_vop.training import TrainingConfig, train
from peft_vop.training.checkpointing import TrainerState
from peft_vop.training.contrastive import VideoTextEncoder
from peft_vop.training.evaluation import evaluate_during_training, prepare_eval_loaders
from peft_vop.training.loop import report_data_wait, warn_if_below_zero_shot
from peft_vop.training.train_data import DataWaitClock, build_train_data, choose_loader_settings


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
    assert state == {
        "global_step": 5,
        "epoch": 1,
        "batches_in_epoch": 2,
        "best_metric": None,
        "best_step": None,
        "zero_shot_metric": None,
    }


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


def test_the_zero_shot_baseline_is_the_base_model_before_the_first_step(tmp_path, fresh_accelerate_state):
    source = TinyVideoCaptions()
    eval_data = tiny_eval_data(source)
    config = base_config(tmp_path, eval_steps=2, max_steps=2, checkpoint_steps=2)
    result = train(config, train_dataset=source, eval_data=eval_data, collate_fn=collate)
    # The base CLIP evaluated the way training evaluates (frames mean-pooled, as `vop eval` does zero-shot).
    accelerator = Accelerator(cpu=True)
    encoder = VideoTextEncoder(CLIPModel.from_pretrained(config.model_name_or_path)).eval()
    loaders = prepare_eval_loaders(accelerator, eval_data, batch_size=2, num_workers=0)
    assert result.zero_shot_metrics == evaluate_during_training(accelerator, encoder, loaders, eval_data.caption_video)
    state = json.loads((Path(config.output_dir) / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())
    assert state["zero_shot_metric"] == result.zero_shot_metrics["t2v/R@1"]
    assert [entry["step"] for entry in result.eval_history] == [2]  # the baseline is not an evaluation of the adapter

    config = base_config(tmp_path / "off", eval_steps=2, max_steps=2, eval_zero_shot=False)
    assert train(config, train_dataset=source, eval_data=eval_data, collate_fn=collate).zero_shot_metrics is None


@pytest.mark.parametrize(
    ("metric", "zero_shot", "last", "warns"),
    [("t2v/R@1", 20.0, 12.5, True), ("t2v/R@1", 20.0, 20.0, False), ("t2v/R@1", 20.0, 25.0, False),
     ("t2v/MnR", 8.0, 9.5, True), ("t2v/MnR", 8.0, 7.0, False)],
)  # fmt: skip
def test_an_adapter_that_ends_below_zero_shot_warns(tmp_path, metric, zero_shot, last, warns, fresh_accelerate_state):
    config = base_config(tmp_path, metric_for_best_model=metric)
    state = TrainerState(global_step=4, best_metric=last, best_step=4, zero_shot_metric=zero_shot)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_below_zero_shot(Accelerator(cpu=True), config, state, {metric: last, "step": 4})
    messages = [str(warning.message) for warning in caught]
    assert len(messages) == warns
    if warns:
        assert f"validation {metric} is {last:.2f}, below zero-shot ({zero_shot:.2f})" in messages[0]
        assert "--learning_rate" in messages[0]


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


def test_loader_settings_follow_the_machine():
    def workers(**kwargs):
        return choose_loader_settings(kwargs.pop("num_workers", None), **kwargs).num_workers

    # CPUs: cached frames are read in the main process, decoding overlaps the step on 2 workers if cores allow.
    assert workers(use_cpu=True, cached=True, cores=16) == 0
    assert workers(use_cpu=True, cached=False, cores=16) == 2
    assert workers(use_cpu=True, cached=False, cores=2) == 1
    # GPUs: one core per process for its loop; the rest, up to 4 cache readers or 16 decoders.
    assert workers(use_cpu=False, cached=True, cores=16) == 4
    assert workers(use_cpu=False, cached=False, cores=16) == 15
    assert workers(use_cpu=False, cached=False, cores=64, num_processes=2) == 16
    assert workers(use_cpu=False, cached=False, cores=16, num_processes=8) == 1
    assert workers(use_cpu=True, cached=True, cores=16, num_workers=5) == 5
    gpu = choose_loader_settings(None, use_cpu=False, cached=True, cores=16)
    assert (gpu.prefetch_factor, gpu.persistent_workers, gpu.pin_memory) == (4, True, True)
    cpu = choose_loader_settings(None, use_cpu=True, cached=True, cores=16)
    assert (cpu.prefetch_factor, cpu.persistent_workers, cpu.pin_memory) == (None, False, False)
    with pytest.raises(ValueError, match="`num_workers` must be 0 or more; got -1"):
        choose_loader_settings(-1, use_cpu=True, cached=True)


def test_data_wait_clock_counts_only_the_wait_for_batches():
    def slow_batches():
        for batch in range(3):
            time.sleep(0.05)  # the loader
            yield batch

    clock = DataWaitClock()
    for _ in clock.batches(slow_batches()):
        time.sleep(0.05)  # the step
        with clock.paused():
            time.sleep(0.2)  # evaluation: neither waiting nor training
    assert 0.15 <= clock.waited < 0.25
    assert 0.3 <= clock.elapsed < 0.45
    assert 0.35 < clock.fraction < 0.65
    clock.stop()
    stopped = clock.elapsed, clock.fraction
    time.sleep(0.05)
    assert (clock.elapsed, clock.fraction) == stopped  # read later, as the report is, the numbers do not move


def test_training_reports_the_data_wait(tmp_path, capfd):
    config = base_config(tmp_path, num_train_epochs=1)
    result = train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate)
    assert 0 < result.data_wait_fraction < 1
    out = capfd.readouterr().out
    assert f"The step waited for data {100 * result.data_wait_fraction:.1f}% of the training time" in out


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_the_progress_bar_can_be_hidden(tmp_path, capfd, disable_tqdm):
    config = base_config(tmp_path, num_train_epochs=1, disable_tqdm=disable_tqdm)
    train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate)
    err = capfd.readouterr().err
    assert ("train: 100%" in err) is not disable_tqdm


def test_device_step_trains_exactly_like_the_per_sample_path(tmp_path):
    # vop train's own data (workers hand over uint8 frames, the step crops and normalises) against datasets that
    # crop and normalise per sample: on the CPU the adapters are equal, bit for bit.
    recipe = {
        "model_name_or_path": str(world_clip_dir()),
        "annotations": str(tiny_world()),
        "variant": "vop_p",
        "num_frames": 4,
        "batch_size": 4,
        "max_steps": 3,
        "num_workers": 0,
        "eval_split": None,
        "checkpoint_steps": None,
        "disable_tqdm": True,
    }
    device = TrainingConfig(**recipe, output_dir=str(tmp_path / "device"))
    dataset, collator = build_train_data(device)
    assert dataset.device_preprocessing
    train(device)

    per_sample = TrainingConfig(**recipe, output_dir=str(tmp_path / "per-sample"))
    dataset.device_preprocessing = False
    train(per_sample, train_dataset=dataset, collate_fn=collator)
    expected = load_file(tmp_path / "per-sample" / "adapter_model.safetensors")
    got = load_file(tmp_path / "device" / "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)


def test_a_long_data_wait_warns_and_says_what_helps(capsys, fresh_accelerate_state):
    def batches(load_seconds):
        for batch in range(3):
            time.sleep(load_seconds)
            yield batch

    accelerator = Accelerator(cpu=True)
    starved = DataWaitClock()
    for _ in starved.batches(batches(0.05)):
        pass
    with pytest.warns(UserWarning, match=r"waited for data \d+% of the time.*`vop prepare`.*`--num_workers`"):
        report_data_wait(accelerator, starved)
    fed = DataWaitClock()
    for _ in fed.batches(batches(0.0)):
        time.sleep(0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report_data_wait(accelerator, fed)
    reported = [float(value) for value in re.findall(r"waited for data ([\d.]+)%", capsys.readouterr().out)]
    assert reported[0] > 90 and reported[1] < 10


def test_gradient_checkpointing_recomputes_the_layers_and_trains_the_same_adapter(tmp_path, monkeypatch):
    import transformers.modeling_utils

    calls = []
    checkpoint = transformers.modeling_utils.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", counting_checkpoint)
    # adam_epsilon=1 keeps AdamW from amplifying float-rounding differences in near-zero gradients into updates.
    options = {"variant": "vop_f+c", "adapter_options": {"intra_frame_layers": 2}, "max_steps": 3, "adam_epsilon": 1.0}
    train(base_config(tmp_path / "plain", **options), train_dataset=TinyVideoCaptions(), collate_fn=collate)
    assert calls == []
    config = base_config(tmp_path / "checkpointed", gradient_checkpointing=True, **options)
    train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate)
    # Every layer of both towers (2 text + 3 vision in the tiny CLIP) goes through a non-reentrant checkpoint.
    assert len(calls) >= 3 * 5 and set(calls) == {False}
    expected = load_file(tmp_path / "plain" / "run" / "adapter_model.safetensors")
    got = load_file(tmp_path / "checkpointed" / "run" / "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
