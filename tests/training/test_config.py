"""`TrainingConfig`: the paper's recipe as defaults, YAML/JSON files, overrides, and what a resume may change."""

from __future__ import annotations

import json

import pytest
import yaml

from peft_vop.training import DEFAULT_LEARNING_RATE, TrainingConfig, load_config_file


REQUIRED = {"model_name_or_path": "clip", "output_dir": "out", "annotations": "data.jsonl"}


def test_defaults_are_the_paper_recipe():
    config = TrainingConfig(**REQUIRED)
    assert config.weight_decay == 0.2
    assert config.warmup_ratio == 0.1
    assert config.max_grad_norm == 1.0
    assert config.num_frames == 12
    assert config.batch_size == 32
    assert config.num_train_epochs == 5
    assert config.variant == "vop"
    assert config.learning_rate == DEFAULT_LEARNING_RATE
    assert config.train_sampling == "rand"


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_from_file_then_overrides(tmp_path, suffix):
    values = {**REQUIRED, "variant": "vop_f+c", "learning_rate": 0.003, "adapter_options": {"intra_frame_layers": 6}}
    path = tmp_path / f"config{suffix}"
    path.write_text(json.dumps(values) if suffix == ".json" else yaml.safe_dump(values))
    config = TrainingConfig.from_file(path, learning_rate=0.01)
    assert config.variant == "vop_f+c" and config.learning_rate == 0.01
    assert config.adapter_config().intra_frame_layers == 6
    assert config.adapter_config().num_frames == 12


def test_round_trip_through_json(tmp_path):
    config = TrainingConfig(**REQUIRED, adam_beta1=0.8, adam_beta2=0.9, report_to="tensorboard", horizontal_flip=False)
    config.save(tmp_path / "config.json")
    again = TrainingConfig.from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert again == config and again.report_to == ["tensorboard"] and again.adam_betas == (0.8, 0.9)
    assert again.augmentations == ("crop",)


def test_earlier_key_names_are_still_read():
    config = TrainingConfig.from_dict({**REQUIRED, "num_epochs": 3, "adam_betas": [0.8, 0.95]})
    assert config.num_train_epochs == 3 and (config.adam_beta1, config.adam_beta2) == (0.8, 0.95)
    # A run written before the rename resumes: its saved config reads back to the same trajectory.
    assert config.trajectory_fields() == TrainingConfig.from_dict(config.to_dict()).trajectory_fields()


@pytest.mark.parametrize(
    ("crop", "flip", "augmentations"),
    [(True, True, ("crop", "flip")), (False, True, ("flip",)), (True, False, ("crop",)), (False, False, ())],
)
def test_crop_and_flip_switch_separately(crop, flip, augmentations):
    config = TrainingConfig(**REQUIRED, random_crop=crop, horizontal_flip=flip)
    assert config.augmentations == augmentations


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("config.toml", "", "must end in .yaml, .yml or .json"),
        ("config.yaml", "- a list", "must hold a mapping"),
        ("missing.yaml", None, "does not exist"),
    ],
)
def test_bad_config_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_config_file(path)


def test_adapter_options_cannot_shadow_top_level_keys():
    with pytest.raises(ValueError, match=r"must not set \['num_frames'\]"):
        TrainingConfig(**REQUIRED, adapter_options={"num_frames": 8})


def test_trajectory_fields_leave_out_logging_and_checkpointing():
    fields = TrainingConfig(**REQUIRED).trajectory_fields()
    assert "learning_rate" in fields and "seed" in fields and "batch_size" in fields and "frame_cache" in fields
    assert not {"logging_steps", "checkpoint_steps", "report_to", "output_dir", "eval_steps"} & fields.keys()
