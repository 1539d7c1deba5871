"""`vop prepare` → `vop train` → `vop eval` end to end on the synthetic world, with a tiny random checkpoint of a
family other than CLIP: MetaCLIP 2 (softmax loss, CLIP's preprocessing) and SigLIP 2 (sigmoid loss, captions padded
to a fixed length, frames cut into patch sequences), with a fixed-resolution image processor and with its NaFlex
one."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from helpers.tiny_run import tiny_world
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    CLIPImageProcessor,
    MetaClip2Config,
    MetaClip2Model,
    Siglip2Config,
    Siglip2Model,
    SiglipImageProcessor,
)
from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

from peft_vop.cli.main import main
from peft_vop.data import FramePreprocessor
from peft_vop.data.preprocessing import caption_tokenizer
from peft_vop.synthetic.tokenizer import build_world_tokenizer


TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
VISION = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4}
POSITIONS = 24  # text positions; the tokenizer's model_max_length, so SigLIP 2 captions are padded to 24


def save_checkpoint(family: str, directory: Path) -> Path:
    """A tiny random `family` model with the synthetic world's tokenizer and a 32-px image processor of the class
    its Hub checkpoints use, saved like one."""
    tokenizer = build_world_tokenizer(model_max_length=POSITIONS)
    text = {**TEXT, "vocab_size": len(tokenizer), "max_position_embeddings": POSITIONS}
    text.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    text["pad_token_id"] = tokenizer.pad_token_id
    torch.manual_seed(0)
    if family == "metaclip_2":
        vision = {**VISION, "image_size": 32, "patch_size": 8}
        model = MetaClip2Model(MetaClip2Config(text_config=text, vision_config=vision, projection_dim=24))
        image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        text["projection_size"] = VISION["hidden_size"]
        model = Siglip2Model(
            Siglip2Config(text_config=text, vision_config={**VISION, "num_patches": 16, "patch_size": 8})
        )
        if family == "siglip2_naflex":  # as google/siglip2-base-patch16-naflex: each image on its own patch grid
            image_processor = Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)
        else:  # SigLIP 2's fixed-resolution checkpoints (e.g. google/siglip2-base-patch16-224) ship this processor
            image_processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    image_processor.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("family", ["metaclip_2", "siglip2", "siglip2_naflex"])
def test_prepare_train_eval(family, tmp_path, capsys):
    checkpoint = str(save_checkpoint(family, tmp_path / family))
    naflex, family = family == "siglip2_naflex", family.removesuffix("_naflex")
    assert FramePreprocessor.from_pretrained(checkpoint).is_naflex == naflex
    # SigLIP 2 pads every caption to the fixed length it was trained with; MetaCLIP 2 to the longest in the batch.
    tokenizer, captions = AutoTokenizer.from_pretrained(checkpoint), ["a red ball", "a red ball rolls left"]
    longest = tokenizer(captions, padding=True, return_tensors="pt")["input_ids"].shape[1]
    tokens = caption_tokenizer(tokenizer, checkpoint)(captions, padding=True, truncation=True, return_tensors="pt")
    assert longest < POSITIONS and tokens["input_ids"].shape[1] == (POSITIONS if family == "siglip2" else longest)
    tokenizer.model_max_length = 10**30  # unset in the tokenizer's files: the text positions bound the fixed length
    tokenize = pickle.loads(pickle.dumps(caption_tokenizer(tokenizer, checkpoint)))  # as loader workers get it
    tokens = tokenize(captions, padding=True, truncation=True, return_tensors="pt")
    assert tokens["input_ids"].shape[1] == (POSITIONS if family == "siglip2" else longest)
    world = str(tiny_world())
    common = ["--model", checkpoint, "--annotations", world, "--num-frames", "4", "--no-progress"]
    prepare = ["prepare", *common, "--split", "train", "--sampling", "rand", "--seed", "7"]
    assert main([*prepare, "--output", str(tmp_path / "train-cache")]) == 0
    config = tmp_path / "train.yaml"
    recipe = {
        "model_name_or_path": checkpoint,
        "annotations": world,
        "output_dir": str(tmp_path / "run"),
        "variant": "vop_f+c",
        "adapter_options": {"intra_frame_layers": 2},
        "num_frames": 4,
        "batch_size": 4,
        "num_train_epochs": 1,
        "learning_rate": 0.05,
        "num_workers": 0,
        "logging_steps": 1,
        "frame_cache": str(tmp_path / "train-cache"),
        "seed": 7,
    }
    config.write_text(yaml.safe_dump(recipe))
    with pytest.warns(UserWarning, match="one draw of `rand` sampling"):
        status = main(["train", "--config", str(config)])
    assert status == 0, capsys.readouterr().err
    run = tmp_path / "run"
    adapter_config = json.loads((run / "adapter_config.json").read_text())
    assert adapter_config["backbone_family"] == family and adapter_config["variant"] == "vop_f+c"
    # The adapter's card loads the base model with its own class.
    card = (run / "README.md").read_text()
    model_class = {"metaclip_2": "MetaClip2Model", "siglip2": "Siglip2Model"}[family]
    assert f"from transformers import {model_class}\n" in card
    assert f'base_model = {model_class}.from_pretrained("{checkpoint}")' in card
    assert ("vision_inputs(model, videos)" in card) == (family == "siglip2")

    metrics_path = tmp_path / "metrics.json"
    eval_args = ["eval", "--model", checkpoint, "--annotations", world, "--split", "val", "--num-workers", "0"]
    eval_args += ["--no-progress", "--output", str(metrics_path)]
    assert main([*eval_args, "--adapter", str(run / "best")]) == 0
    metrics = json.loads(metrics_path.read_text())
    assert (metrics["num_videos"], metrics["num_frames"]) == (4, 4)
    # `vop eval` of the best adapter gives the numbers the training run measured on the same split.
    best = json.loads((run / "best" / "eval_results.json").read_text())
    (result,) = metrics["results"]
    assert result["t2v"]["R@1"] == pytest.approx(best["t2v/R@1"]) and result["v2t"]["MnR"] == pytest.approx(
        best["v2t/MnR"]
    )


def test_a_checkpoint_of_another_kind_is_refused_before_its_weights_are_read(tmp_path, capsys):
    config = BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    BertModel(config).save_pretrained(tmp_path / "bert")
    build_world_tokenizer().save_pretrained(tmp_path / "bert")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "bert"
    )
    status = main(["eval", "--model", str(tmp_path / "bert"), "--annotations", str(tiny_world()), "--split", "val"])
    assert status == 2
    error = capsys.readouterr().err
    assert "is a 'bert' checkpoint; VoP supports" in error and "'metaclip_2'" in error and "Siglip2Model" in error


@pytest.mark.parametrize("family", ["metaclip_2", "siglip2", "siglip2_naflex"])
def test_vop_index_and_search_with_each_family(family, tmp_path):
    from peft import get_peft_model

    import peft_vop
    from peft_vop.families import load_dual_encoder
    from peft_vop.search import VideoIndex

    checkpoint = str(save_checkpoint(family, tmp_path / family))
    adapter = tmp_path / "adapter"
    config = peft_vop.VoPConfig(variant="vop_f+c", num_frames=4, intra_frame_layers=2)
    get_peft_model(load_dual_encoder(checkpoint), config).save_pretrained(adapter)
    index = VideoIndex.build(
        tiny_world(), tmp_path / "index", model=checkpoint, adapter=str(adapter), split="val", progress=False
    )
    assert len(index) == 4 and index.embeddings.shape[0] == 4
    first = index.entries[0].path
    (hit, *_) = index.search(video=first, k=2)  # a video finds itself first, embedded the same way
    assert hit.entry.path == first and hit.score == pytest.approx(1.0, abs=1e-5)
    assert len(index.search(text="a red ball", k=3)) == 3


@pytest.mark.parametrize("family", ["clip", "metaclip_2", "siglip", "siglip2"])
def test_embedding_size_is_what_the_model_returns(family):

    from helpers.families import text_inputs, tiny_model

    from peft_vop.families import embedding_size

    model = tiny_model(family)
    with torch.no_grad():
        embeds = model.get_text_features(**text_inputs(family)).pooler_output
    assert embedding_size(model.config) == embeds.shape[-1]
