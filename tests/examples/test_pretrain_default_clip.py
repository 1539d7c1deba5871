"""The program that pre-trained the shipped default CLIP (`examples/pretrain_default_clip.py`) still runs and
reproduces the shipped model card; the package itself does not contain it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoProcessor, AutoTokenizer, CLIPModel

from peft_vop.synthetic import default_model_path


SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "pretrain_default_clip.py"


@pytest.fixture(scope="module")
def program():
    spec = importlib.util.spec_from_file_location("pretrain_default_clip", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in `sys.modules` while they are built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_the_package_does_not_ship_the_pretraining_program():
    assert importlib.util.find_spec("peft_vop.synthetic.pretrain") is None


def test_model_card_of_the_shipped_report_is_the_shipped_card(program):
    report = json.loads((default_model_path() / "pretraining.json").read_text())
    assert program.model_card(report) == (default_model_path() / "README.md").read_text()


def test_config_is_validated(program):
    with pytest.raises(ValueError, match="`image_size` must be a multiple of `patch_size`"):
        program.PretrainConfig(image_size=60, patch_size=16)


@pytest.mark.slow
def test_a_short_run_saves_a_loadable_model_with_card_and_report(tmp_path: Path):
    output = tmp_path / "model"
    arguments = ["--output-dir", str(output), "--steps", "2", "--batch-size", "4", "--eval-size", "8"]
    arguments += ["--vision-width", "32", "--text-width", "32", "--vision-layers", "1", "--text-layers", "1"]
    arguments += ["--projection-dim", "16", "--log-every", "1", "--probe-every", "1"]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, env=environment, timeout=600
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((output / "pretraining.json").read_text())
    assert [entry["step"] for entry in report["log"]] == [1, 2]
    assert report["config"]["vision_width"] == 32
    model = CLIPModel.from_pretrained(output)
    assert model.config.vision_config.num_hidden_layers == 1
    assert sum(p.numel() for p in model.parameters()) == report["num_parameters"]
    AutoTokenizer.from_pretrained(output)
    AutoProcessor.from_pretrained(output)
    card = (output / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers")
    assert "2 steps of batch 4" in card
