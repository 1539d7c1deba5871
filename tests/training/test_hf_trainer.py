"""The Hugging Face `Trainer` trains a VoP model with our collator (examples/hf_trainer.py), single process."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import torch
from helpers.tiny_run import tiny_world, world_clip_dir
from safetensors.torch import load_file


EXAMPLE = Path(__file__).parents[2] / "examples" / "hf_trainer.py"


def load_example():
    spec = importlib.util.spec_from_file_location("hf_trainer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trainer_trains_and_saves_only_the_adapter(tmp_path):
    example = load_example()
    trainer, eval_dataset, tokenizer = example.build_trainer(
        str(world_clip_dir()),
        str(tiny_world()),
        str(tmp_path / "trainer"),
        variant="vop_p",
        num_frames=4,
        batch_size=4,
        learning_rate=1e-2,
        num_epochs=2,
        num_workers=0,
        use_cpu=True,
    )
    before = {name: value.clone() for name, value in trainer.model.named_parameters() if value.requires_grad}
    output = trainer.train()
    assert output.global_step == 4  # 8 videos / 4 per batch * 2 epochs
    assert math.isfinite(output.training_loss)
    losses = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)

    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[name], after[name]) for name in before), "the prompts did not train"
    frozen = [name for name, value in after.items() if value.requires_grad and "vop" not in name]
    assert frozen == [], f"CLIP weights would train: {frozen[:3]}"

    trainer.save_model(str(tmp_path / "adapter"))
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert saved and all(".vop." in name for name in saved)  # the adapter only, not CLIP
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["variant"] == "vop_p"

    report = example.evaluate_retrieval(trainer.model, tokenizer, eval_dataset, batch_size=4, progress=False)
    assert report.num_videos == 4
