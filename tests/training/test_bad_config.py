"""Bad configurations fail at start, with a message naming the problem, before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers.tiny_run import tiny_world, world_clip_dir
from transformers import CLIPModel

from peft_vop.cli.main import main
from peft_vop.training import ConfigurationError, TrainingConfig, train


@pytest.fixture(autouse=True)
def no_model_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a bad configuration must be rejected before the model is loaded")

    monkeypatch.setattr(CLIPModel, "from_pretrained", refuse)


def run_cli(tmp_path: Path, capsys, **values) -> str:
    config = {
        "model_name_or_path": str(world_clip_dir()),
        "annotations": str(tiny_world()),
        "output_dir": str(tmp_path / "run"),
        "num_frames": 4,
        "batch_size": 4,
        "num_workers": 0,
    }
    config.update(values)
    config = {key: value for key, value in config.items() if value is not None}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    status = main(["train", "--config", str(path)])
    error = capsys.readouterr().err
    assert status == 2, error
    assert "vop train: error: " in error
    return error


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"variant": "vop_x"}, "`variant` must be one of"),
        ({"adapter_options": {"prompt_depth": 3}}, "adapter_options"),
        ({"annotations": "/nonexistent/annotations.jsonl"}, "file not found: /nonexistent/annotations.jsonl"),
        ({"annotations": None}, "Give exactly one dataset"),
        ({"eval_split": "test"}, "no videos in split 'test'"),
        ({"num_frames": 0}, "`num_frames` (--num_frames) must be an integer >= 1"),
        ({"batch_size": 16}, "8 samples, fewer than one forward pass of 16"),
        ({"batch_size": 6, "gradient_accumulation_steps": 4}, "multiple of `gradient_accumulation_steps`"),
        ({"on_error": "skip"}, "`on_error` 'skip' needs `frame_cache` (--frame_cache)"),
        ({"mixed_precision": "fp8"}, "`mixed_precision` (--mixed_precision) must be one of"),
        ({"learning_rate": 0}, "`learning_rate` (--learning_rate) must be a number in (0.0, inf)"),
        ({"variant": "vop_f", "adapter_options": {"intra_frame_layers": 3}}, "has 3 vision layers; VoP^F needs 1..2"),
        ({"lr": 0.1}, "Unknown training config keys ['lr']"),
        (
            {"metric_for_best_model": "R@1"},
            "`metric_for_best_model` (--metric_for_best_model) must be one of ['t2v/R@1'",
        ),
        ({"model_name_or_path": "/nonexistent/clip"}, "/nonexistent/clip"),
    ],
)
def test_bad_values_fail_with_a_clear_message(tmp_path, capsys, values, message):
    assert message in run_cli(tmp_path, capsys, **values)


def test_missing_videos_are_named(tmp_path, capsys):
    lines = tiny_world().read_text().splitlines()
    record = json.loads(lines[0])
    record["video"] = "videos/gone.mp4"
    annotations = tiny_world().with_name("broken.jsonl")
    annotations.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    error = run_cli(tmp_path, capsys, annotations=str(annotations))
    assert "1 of the 8 videos of split 'train' are missing" in error and "gone.mp4" in error


def test_frame_cache_with_another_frame_count_is_refused(tmp_path, capsys):
    cache = tmp_path / "cache"
    prepare = ["prepare", "--model", str(world_clip_dir()), "--annotations", str(tiny_world()), "--split", "train"]
    assert (
        main(
            [
                *prepare,
                "--num-frames",
                "6",
                "--sampling",
                "rand",
                "--seed",
                "42",
                "--output",
                str(cache),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    error = run_cli(tmp_path, capsys, frame_cache=str(cache), eval_split=None)
    assert "num_frames: cache has 6, requested 4" in error
    assert "give this command the cache's settings (--num_frames 6)" in error  # the flag that fixes it


def test_output_dir_holding_another_run_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    TrainingConfig(model_name_or_path="other", annotations="other.jsonl", output_dir=str(run), variant="vop_c").save(
        run / "training_config.json"
    )
    assert "already holds a training run" in run_cli(tmp_path, capsys)
    assert "different recipe (" in run_cli(tmp_path, capsys, resume_from_checkpoint="latest")


def test_output_dir_with_foreign_files_is_refused(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert "is not a `vop train` run" in run_cli(tmp_path, capsys)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("variable", "engine"), [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")]
)
def test_fsdp_and_deepspeed_are_refused_with_a_pointer_to_ddp(tmp_path, capsys, monkeypatch, variable, engine):
    monkeypatch.setenv(variable, "true")  # what `accelerate launch` sets from such an accelerate config
    error = run_cli(tmp_path, capsys)
    assert f"does not run under {engine}" in error and "accelerate launch --multi_gpu" in error
    assert not (tmp_path / "run").exists()


def test_python_api_raises_configuration_error(tmp_path):
    config = TrainingConfig(
        model_name_or_path=str(world_clip_dir()),
        annotations=str(tmp_path / "missing.jsonl"),
        output_dir=str(tmp_path / "run"),
    )
    with pytest.raises(ConfigurationError, match="missing.jsonl"):
        train(config)
