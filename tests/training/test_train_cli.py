"""`vop train` end to end on a real (tiny, synthetic) video dataset: config file, overrides, outputs, trackers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers.tiny_run import tiny_world, world_clip_dir
from safetensors.torch import load_file

from peft_vop.cli.main import main


def write_yaml(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def recipe(tmp_path: Path, **overrides) -> dict:
    values = {
        "model_name_or_path": str(world_clip_dir()),
        "annotations": str(tiny_world()),
        "output_dir": str(tmp_path / "run"),
        "variant": "vop_f+p",
        "adapter_options": {"intra_frame_layers": 2},
        "num_frames": 4,
        "batch_size": 4,
        "num_train_epochs": 2,
        "num_workers": 0,
        "logging_steps": 1,
    }
    values.update(overrides)
    return values


def test_vop_train_from_a_config_file_with_overrides(tmp_path, capsys):
    config = write_yaml(tmp_path / "train.yaml", **recipe(tmp_path, learning_rate=0.5, checkpoint_steps=3))
    status = main(
        [
            "train",
            "--config",
            str(config),
            "--learning-rate",
            "0.01",
            "--report-to",
            "tensorboard",
            "--metric-for-best-model",
            "rsum",
            "--adapter-option",
            "text_prompt_length=2",
        ]
    )
    assert status == 0, capsys.readouterr().err
    run = tmp_path / "run"

    resolved = json.loads((run / "training_config.json").read_text())
    assert resolved["learning_rate"] == 0.01  # the flag beats the file
    assert resolved["checkpoint_steps"] == 3  # the file beats the default
    assert resolved["weight_decay"] == 0.2 and resolved["warmup_ratio"] == 0.1 and resolved["max_grad_norm"] == 1.0
    assert resolved["adapter_options"] == {"intra_frame_layers": 2, "text_prompt_length": 2}

    # The final adapter, saved by peft, loads back onto the base model.
    from peft import PeftModel
    from transformers import CLIPModel

    import peft_vop  # noqa: F401  (registers VoP with peft)

    adapter_config = json.loads((run / "adapter_config.json").read_text())
    assert adapter_config["variant"] == "vop_f+p" and adapter_config["num_frames"] == 4
    assert adapter_config["text_prompt_length"] == 2
    from peft import get_peft_model_state_dict

    model = PeftModel.from_pretrained(CLIPModel.from_pretrained(world_clip_dir()), run)
    saved = load_file(run / "adapter_model.safetensors")
    loaded = get_peft_model_state_dict(model)
    assert saved.keys() == loaded.keys()
    for name, value in saved.items():
        assert torch.equal(loaded[name], value), name

    # 8 training videos / 4 per step = 2 steps per epoch; evaluated after each epoch, best kept.
    best = json.loads((run / "best" / "eval_results.json").read_text())
    assert {"t2v/R@1", "v2t/R@1", "t2v/MdR", "rsum", "step"} <= best.keys()
    assert (run / "best" / "adapter_model.safetensors").is_file()
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["step-00000003", "step-00000004"]
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    out = capsys.readouterr().out
    assert "Adapter written to" in out and "Best rsum" in out
    # Each evaluation is a line of its own that names the split it ran on.
    evaluations = [line for line in out.splitlines() if "t2v/R@1" in line]
    assert [line.split(":")[0] for line in evaluations] == [
        "eval on val, zero-shot (adapter disabled)",
        "eval on val at step 2",
        "eval on val at step 4",
    ]


def test_vop_train_reads_frame_caches_built_by_vop_prepare(tmp_path, capsys):
    world = tiny_world()
    common = ["--model", str(world_clip_dir()), "--annotations", str(world), "--num-frames", "4", "--no-progress"]
    assert (
        main(
            [
                "prepare",
                *common,
                "--split",
                "train",
                "--sampling",
                "rand",
                "--seed",
                "7",
                "--output",
                str(tmp_path / "train-cache"),
            ]
        )
        == 0
    )
    assert main(["prepare", *common, "--split", "val", "--output", str(tmp_path / "val-cache")]) == 0
    config = write_yaml(
        tmp_path / "train.yaml",
        **recipe(
            tmp_path,
            seed=7,
            num_train_epochs=1,
            frame_cache=str(tmp_path / "train-cache"),
            eval_frame_cache=str(tmp_path / "val-cache"),
        ),
    )
    with pytest.warns(UserWarning, match="one draw of `rand` sampling"):
        status = main(["train", "--config", str(config)])
    assert status == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "best" / "eval_results.json").is_file()


def test_print_config_resolves_without_training(tmp_path, capsys):
    config = write_yaml(tmp_path / "train.yaml", **recipe(tmp_path))
    assert (
        main(["train", "--config", str(config), "--batch-size", "64", "--eval-split", "none", "--print-config"]) == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["batch_size"] == 64 and printed["eval_split"] is None
    assert not (tmp_path / "run").exists()


def test_an_adapter_trained_on_the_shipped_clip_records_its_portable_name(tmp_path, capsys):
    run = tmp_path / "run"
    status = main(
        ["train", "--model_name_or_path", "default", "--annotations", str(tiny_world()), "--output_dir", str(run),
         "--num_frames", "4", "--batch_size", "4", "--max_steps", "1", "--eval_split", "none", "--num_workers", "0",
         "--no_random_crop", "--no_horizontal_flip", "--disable_tqdm"]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    adapter_config = json.loads((run / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "default"  # not this checkout's absolute path
    resolved = json.loads((run / "training_config.json").read_text())
    assert resolved["model_name_or_path"] == "default"
    assert (resolved["random_crop"], resolved["horizontal_flip"]) == (False, False)
    out = capsys.readouterr().out
    assert "1 epoch of" in out and "Adapter written to" in out
    # The card says how to load the adapter first, before peft's template, and links nothing that does not exist.
    card = (run / "README.md").read_text()
    assert card.index("how to load it") < card.index("# Model Card for")
    assert "pip install peft-vop" in card and "CLIPModel.from_pretrained(default_model_path())" in card
    assert "base_model:" not in card and "github.com" not in card
