"""`vop eval` and `vop prepare` end to end on a tiny CLIP checkpoint saved to a temporary folder."""

import json

import pytest
import torch
from helpers.clip import tiny_clip
from helpers.tiny_checkpoint import save_tiny_checkpoint, tiny_tokenizer
from helpers.video_factory import write_video
from peft import get_peft_model
from transformers import CLIPModel

import peft_vop
from peft_vop.cli.main import main
from peft_vop.data import FramePreprocessor, VideoRecord, VideoTextDataset, read_annotations, write_annotations
from peft_vop.retrieval import evaluate_retrieval


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("workspace")
    checkpoint = save_tiny_checkpoint(root / "clip")
    (root / "videos").mkdir()
    records = [
        VideoRecord(write_video(root / "videos" / f"v{i}.mp4", 10 + 4 * i), captions, f"v{i}", split)
        for i, (captions, split) in enumerate(
            [(["a cat", "the cat"], "test"), (["a dog"], "test"), (["an owl"], "test"), (["a fish"], "train")]
        )
    ]
    write_annotations(records, root / "annotations.jsonl")
    return root, checkpoint


def run_eval(workspace, *extra, split="test"):
    root, checkpoint = workspace
    output = root / "metrics.json"
    arguments = ["eval", "--model", checkpoint, "--annotations", str(root / "annotations.jsonl"), "--split", split]
    arguments += ["--num-frames", "3", "--num-workers", "0", "--output", str(output), *extra]
    return main(arguments), output


def test_eval_prints_a_table_and_writes_the_metrics(workspace, capsys):
    status, output = run_eval(workspace)
    assert status == 0
    printed = capsys.readouterr()
    assert "R@1" in printed.out and "t2v" in printed.out and "v2t" in printed.out and "(DSL)" not in printed.out
    assert "Encoding videos" in printed.err  # tqdm progress
    metrics = json.loads(output.read_text())
    assert (metrics["num_videos"], metrics["num_texts"], metrics["num_frames"]) == (3, 4, 3)
    assert metrics["ties"] == "pessimistic" and metrics["skipped_videos"] == 0
    (result,) = metrics["results"]
    assert result["dsl"] is False and set(result["t2v"]) == {"R@1", "R@5", "R@10", "MdR", "MnR", "queries"}

    # The same numbers as the Python API on the same checkpoint.
    root, checkpoint = workspace
    dataset = VideoTextDataset(
        read_annotations(root / "annotations.jsonl", split="test"),
        FramePreprocessor.from_pretrained(checkpoint),
        num_frames=3,
    )
    report = evaluate_retrieval(CLIPModel.from_pretrained(checkpoint), tiny_tokenizer(), dataset, progress=False)
    assert result["t2v"] == pytest.approx(report.to_dict()["results"][0]["t2v"])


def test_dsl_is_labelled(workspace, capsys):
    status, output = run_eval(workspace, "--dsl", "--no-progress")
    assert status == 0
    assert "t2v (DSL)" in capsys.readouterr().out
    assert [result["dsl"] for result in json.loads(output.read_text())["results"]] == [False, True]


def test_eval_with_a_vop_adapter(workspace, tmp_path, capsys):
    root, checkpoint = workspace
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop_p", num_frames=3))
    torch.nn.init.normal_(next(p for n, p in model.named_parameters() if p.requires_grad), std=1.0)
    model.save_pretrained(tmp_path / "adapter")
    status, output = run_eval(workspace, "--adapter", str(tmp_path / "adapter"), "--no-progress")
    assert status == 0
    metrics = json.loads(output.read_text())
    assert metrics["adapter"] == str(tmp_path / "adapter") and metrics["num_frames"] == 3

    # The adapter's frame count is used when --num-frames is left out, and a different one is refused.
    arguments = ["eval", "--model", checkpoint, "--adapter", str(tmp_path / "adapter"), "--annotations"]
    arguments += [str(root / "annotations.jsonl"), "--num-workers", "0", "--output", str(tmp_path / "m.json")]
    assert main([*arguments, "--no-progress"]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["num_frames"] == 3
    assert main([*arguments, "--num-frames", "4"]) == 2
    assert "--num_frames 4 differs from the adapter's num_frames=3" in capsys.readouterr().err

    # Without --output, the metrics land next to the adapter (not in the current folder), or in --output_dir.
    arguments = ["eval", "--model_name_or_path", checkpoint, "--adapter_name_or_path", str(tmp_path / "adapter")]
    arguments += ["--annotations", str(root / "annotations.jsonl"), "--num_workers", "0", "--disable_tqdm"]
    assert main(arguments) == 0
    assert json.loads((tmp_path / "adapter" / "eval_metrics.json").read_text())["num_frames"] == 3
    assert main([*arguments, "--output_dir", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "eval_metrics.json").is_file()
    printed = capsys.readouterr()
    assert "Loading weights" not in printed.err  # --disable_tqdm silences transformers' bars too


def test_unreadable_videos_follow_on_error(workspace, tmp_path, capsys):
    root, checkpoint = workspace
    records = read_annotations(root / "annotations.jsonl", split="test")
    records.append(VideoRecord(str(tmp_path / "missing.mp4"), ("a ghost",), "missing", "test"))
    write_annotations(records, tmp_path / "annotations.jsonl")
    arguments = ["eval", "--model", checkpoint, "--annotations", str(tmp_path / "annotations.jsonl")]
    arguments += ["--num-frames", "3", "--num-workers", "0", "--output", str(tmp_path / "m.json"), "--no-progress"]
    assert main(arguments) == 1
    assert "missing.mp4: file not found" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="missing.mp4"):
        assert main([*arguments, "--on-error", "skip"]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert (metrics["skipped_videos"], metrics["dropped_captions"], metrics["num_videos"]) == (1, 1, 3)
    assert metrics["skipped"][0]["name"] == str(tmp_path / "missing.mp4")
    assert "1 videos could not be decoded" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--annotations", "nowhere.jsonl"], "--annotations: file not found: nowhere.jsonl"),
        (["--annotations", "{ann}", "--split", "dev"], "--split must be one of train, val, test for --annotations"),
        (["--annotations", "{ann}", "--benchmark", "msrvtt"], "Give exactly one dataset"),
        (["--benchmark", "msrvtt", "--annotations-dir", "{root}"], "--benchmark msrvtt needs --video_dir"),
        (
            ["--benchmark", "lsmdc", "--annotations-dir", "{root}", "--video-dir", "{root}", "--split", "val_1"],
            "--split must be one of train, val, test for --benchmark lsmdc",
        ),
        (
            ["--annotations", "{ann}", "--model-override", "./missing-clip"],
            "--model_name_or_path: folder not found: ./missing-clip",
        ),
        (["--annotations", "{ann}", "--adapter", "{root}"], "has no adapter_config.json"),
        (["--annotations", "{ann}", "--cache", "{root}"], "--frame_cache: no frame cache at"),
        (["--annotations", "{ann}", "--batch-size", "0"], "--batch_size must be at least 1"),
        (["--annotations", "{ann}", "--output", "{root}/no/such/dir/m.json"], "--output: folder"),
    ],
)
def test_arguments_are_checked_before_any_work(workspace, capsys, arguments, message):
    root, checkpoint = workspace
    arguments = [a.format(root=root, ann=root / "annotations.jsonl") for a in arguments]
    model = checkpoint
    if "--model-override" in arguments:
        index = arguments.index("--model-override")
        model = arguments[index + 1]
        del arguments[index : index + 2]
    assert main(["eval", "--model", model, *arguments]) == 2
    assert message in capsys.readouterr().err


def test_prepare_then_eval_from_the_cache(workspace, tmp_path, capsys):
    root, checkpoint = workspace
    common = ["--model", checkpoint, "--annotations", str(root / "annotations.jsonl"), "--split", "test"]
    common += ["--num-frames", "3", "--num-workers", "0"]
    assert main(["prepare", *common, "--output", str(tmp_path / "cache"), "--no-progress"]) == 0
    assert "3 videos decoded and stored, 0 already cached" in capsys.readouterr().out
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "cache").iterdir()}
    assert len(set(modes.values())) == 1 and len(modes) >= 2, modes  # shards readable like the manifest
    assert main(["prepare", *common, "--output", str(tmp_path / "cache"), "--no-progress"]) == 0
    assert "0 videos decoded and stored, 3 already cached" in capsys.readouterr().out

    assert main(["eval", *common, "--output", str(tmp_path / "plain.json"), "--no-progress"]) == 0
    cached = ["--cache", str(tmp_path / "cache"), "--output", str(tmp_path / "cached.json"), "--no-progress"]
    assert main(["eval", *common, *cached]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())["results"]
    assert json.loads((tmp_path / "cached.json").read_text())["results"] == plain

    # A cache built for other settings is refused, not reused.
    other = [a if a != "3" else "4" for a in common]
    assert main(["eval", *other, *cached]) == 2
    assert "num_frames: cache has 3, requested 4" in capsys.readouterr().err
    assert main(["prepare", *other, "--output", str(tmp_path / "cache"), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_an_adapter_for_another_geometry_is_refused(workspace, tmp_path, capsys):
    root, checkpoint = workspace
    model = get_peft_model(tiny_clip(vision_width=64), peft_vop.VoPConfig(variant="vop", num_frames=3))
    model.save_pretrained(tmp_path / "adapter")
    status, _ = run_eval(workspace, "--adapter", str(tmp_path / "adapter"), "--no-progress")
    assert status == 2
    assert "--adapter_name_or_path: cannot load" in capsys.readouterr().err
