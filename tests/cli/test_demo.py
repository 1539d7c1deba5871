"""A shortened `vop demo`: world, zero-shot, training, evaluation, reload in a fresh process, table."""

from __future__ import annotations

import json

import pytest

from peft_vop.cli.main import main


@pytest.mark.slow
def test_shortened_demo_runs_end_to_end_and_reloads_identically(tmp_path, capsys):
    run_dir = tmp_path / "demo"
    status = main(
        [
            "demo",
            "--output_dir", str(run_dir),
            "--num_train_epochs", "1",
            "--train_videos", "32",
            "--val_videos", "8",
            "--test_videos", "16",
            "--batch_size", "16",
            "--num_workers", "0",
            "--disable_tqdm",
        ]
    )  # fmt: skip
    assert status == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["reload_identical"] is True and results["train_steps"] == 2
    for name in ("zero_shot", "trained"):
        assert results[name]["t2v"]["queries"] == 16 and results[name]["order_pairs"]["pairs"] == 16
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert {p.name for p in run_dir.iterdir()} >= {"world", "adapter", "zero_shot.json", "trained.json", "results.md"}
    printed = capsys.readouterr().out
    assert "| zero-shot CLIP |" in printed and "| VoP (vop_f+p) |" in printed and "[7/7]" in printed
    # The demo ends by searching its test clips with a caption and its time-reversed opposite, with each model.
    assert set(results["search"]["right_direction_percent"]) == {"zero-shot", "vop_f+p"}
    assert len(results["search"]["example"]) == 2
    for ranks in results["search"]["example"].values():
        assert set(ranks) == {"zero-shot", "vop_f+p"} and all(1 <= found["rank"] <= 16 for found in ranks.values())
    assert "16 clips indexed" in printed and "over the 16 paired test captions" in printed


def test_a_finished_demo_is_not_overwritten_by_accident(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{}")
    assert main(["demo", "--output_dir", str(tmp_path)]) == 2
    assert "holds a finished demo; pass --overwrite_output_dir" in capsys.readouterr().err
    assert (tmp_path / "results.json").read_text() == "{}"
