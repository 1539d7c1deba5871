"""Expected user errors in `vop eval` and `vop prepare`: one line naming the file and the fix, exit status 2."""

from __future__ import annotations

import contextlib
import json

import pytest
from helpers.clip import tiny_clip
from helpers.tiny_checkpoint import save_tiny_checkpoint
from helpers.video_factory import write_video
from peft import get_peft_model

import peft_vop
from peft_vop.cli.main import main


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("workspace")
    checkpoint = save_tiny_checkpoint(root / "clip")
    (root / "videos").mkdir()
    for index in range(2):
        write_video(root / "videos" / f"v{index}.mp4", 10)
    adapter = root / "adapter"
    get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop", num_frames=3)).save_pretrained(adapter)
    return root, checkpoint


def annotations(root, name, *lines):
    path = root / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"split": "test", **line}) + "\n" for line in lines))
    return str(path)


def run(command, root, checkpoint, source, *extra):
    output = ["--output", str(root / ("metrics.json" if command == "eval" else "cache"))]
    arguments = [command, "--model", checkpoint, "--annotations", source, "--split", "test", "--num-frames", "3"]
    return main([*arguments, "--num-workers", "0", "--no-progress", "--on-error", "skip", *output, *extra])


def one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(f"vop {command}: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("command", ["eval", "prepare"])
def test_duplicate_ids(workspace, capsys, command):
    root, checkpoint = workspace
    source = annotations(
        root,
        "duplicates",
        {"video": "videos/v0.mp4", "captions": ["a"], "id": "x"},
        {"video": "videos/v1.mp4", "captions": ["b"], "id": "x"},
    )
    assert run(command, root, checkpoint, source) == 2
    line = one_error_line(capsys.readouterr().err, command)
    assert source in line and "ids must be unique" in line and "Give each video its own `id`" in line


@pytest.mark.parametrize("command", ["eval", "prepare"])
def test_every_video_skipped(workspace, capsys, command):
    root, checkpoint = workspace
    source = annotations(
        root,
        "missing",
        {"video": "videos/gone.mp4", "captions": ["a"]},
        {"video": "videos/lost.mp4", "captions": ["b"]},
    )
    with pytest.warns(UserWarning, match="Skipping") if command == "eval" else contextlib.nullcontext():
        assert run(command, root, checkpoint, source) == 2
    line = one_error_line(capsys.readouterr().err, command)
    assert source in line and "--video_dir" in line


def test_videos_without_captions(workspace, capsys):
    root, checkpoint = workspace
    source = annotations(
        root, "uncaptioned", {"video": "videos/v0.mp4", "captions": []}, {"video": "videos/v1.mp4", "captions": []}
    )
    assert run("eval", root, checkpoint, source) == 2
    line = one_error_line(capsys.readouterr().err, "eval")
    assert source in line and "none of the 2 videos has a caption" in line


def test_empty_caption(workspace, capsys):
    root, checkpoint = workspace
    source = annotations(root, "blank", {"video": "videos/v0.mp4", "captions": ["a cat", " "]})
    assert run("eval", root, checkpoint, source) == 2
    assert f"{source}, line 1, `captions`: a caption is empty" in one_error_line(capsys.readouterr().err, "eval")


def test_truncated_adapter(workspace, tmp_path, capsys):
    root, checkpoint = workspace
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        data = (root / "adapter" / name).read_bytes()
        (adapter / name).write_bytes(data if name.endswith(".json") else data[: len(data) // 2])
    source = annotations(root, "good", {"video": "videos/v0.mp4", "captions": ["a"]})
    assert run("eval", root, checkpoint, source, "--adapter", str(adapter)) == 2
    line = one_error_line(capsys.readouterr().err, "eval")
    assert f"{adapter / 'adapter_model.safetensors'} is truncated or corrupt" in line and "again" in line


def test_eval_output_that_is_a_directory_fails_before_any_work(workspace, capsys):
    root, checkpoint = workspace
    source = annotations(root, "good", {"video": "videos/v0.mp4", "captions": ["a"]})
    assert main(["eval", "--model", checkpoint, "--annotations", source, "--output", str(root / "videos")]) == 2
    line = one_error_line(capsys.readouterr().err, "eval")
    assert f"--output: {root / 'videos'} is a directory" in line
