"""`push_to_hub` goes through peft's own upload path; offline, we check the files it would upload."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import torch
import transformers.utils.hub as transformers_hub
from helpers.tiny_run import TinyVideoCaptions, base_config, collate
from huggingface_hub import ModelCard, ModelCardData
from safetensors.torch import load_file

from peft_vop.training import train


def test_push_to_hub_uploads_the_final_adapter(tmp_path, monkeypatch):
    uploads = []

    class OfflineHub:
        """The two Hub API calls of transformers' `push_to_hub`; the commit keeps a copy of what it would send."""

        def create_repo(self, repo_id, private=None, token=None, exist_ok=False):
            uploads.append({"repo_id": repo_id, "private": private})
            return SimpleNamespace(repo_id=repo_id)

        def create_commit(self, repo_id, operations, **kwargs):
            (tmp_path / "uploaded").mkdir()
            for operation in operations:
                shutil.copy(operation.path_or_fileobj, tmp_path / "uploaded" / operation.path_in_repo)
            uploads[-1]["files"] = sorted(operation.path_in_repo for operation in operations)

    monkeypatch.setattr(transformers_hub, "hf_api", OfflineHub)
    monkeypatch.setattr(
        transformers_hub,
        "create_and_tag_model_card",
        lambda repo_id, tags=None, token=None: ModelCard.from_template(ModelCardData(tags=tags or [])),
    )

    config = base_config(
        tmp_path, num_train_epochs=1, push_to_hub=True, hub_model_id="someone/vop-tiny", hub_private_repo=True
    )
    train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate)

    assert uploads == [
        {
            "repo_id": "someone/vop-tiny",
            "private": True,
            "files": ["README.md", "adapter_config.json", "adapter_model.safetensors"],
        }
    ]
    uploaded = load_file(tmp_path / "uploaded" / "adapter_model.safetensors")
    saved = load_file(Path(config.output_dir) / "adapter_model.safetensors")
    assert uploaded.keys() == saved.keys()
    assert all(torch.equal(uploaded[name], saved[name]) for name in saved)
    assert (tmp_path / "uploaded" / "adapter_config.json").read_text() == (
        Path(config.output_dir) / "adapter_config.json"
    ).read_text()
    card = (tmp_path / "uploaded" / "README.md").read_text()
    assert "library_name: peft" in card and "## VoP adapter" in card and "import peft_vop" in card
