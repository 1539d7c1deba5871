"""Index builds as real processes: killed and resumed, and split over two gloo processes by `accelerate launch`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.video_factory import write_video

from peft_vop.search import VideoIndex


REPO = Path(__file__).parents[2]
pytestmark = pytest.mark.slow


def environment() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }


def index_command(source: Path, output: Path, checkpoint: str, *extra: str) -> list[str]:
    return [
        "index", str(source), "--model", checkpoint, "--output", str(output), "--num-frames", "3",
        "--batch-size", "1", "--no-progress", *extra,
    ]  # fmt: skip


def write_videos(folder: Path, count: int, first_length: int) -> None:
    folder.mkdir(exist_ok=True)
    for number in range(count):
        write_video(folder / f"clip{number:03d}.mp4", first_length + number % 7)


def kill_after_first_chunk(command: list[str], partial: Path) -> None:
    """Start `vop index` and SIGKILL it as soon as it has saved a chunk; fail if it finished first."""
    process = subprocess.Popen(
        [sys.executable, "-m", "peft_vop.cli.main", *command], env=environment(), stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not list(partial.glob("part-*.safetensors")):
            assert process.poll() is None, f"the build ended before it could be interrupted: {process.stderr.read()}"
            assert time.monotonic() < deadline, "no chunk was saved within 120 s"
            time.sleep(0.005)
        process.kill()
    finally:
        process.wait()
        process.stderr.close()
    assert process.returncode == -9


def test_a_killed_build_resumes_and_a_killed_update_leaves_the_old_index(tmp_path, checkpoint):
    from peft_vop.cli.main import main

    source, output = tmp_path / "videos", tmp_path / "index"
    write_videos(source, 60, first_length=20)
    command = index_command(source, output, checkpoint, "--flush-every", "2")

    # A first build killed after its first chunk: no index yet, the finished chunks are kept.
    kill_after_first_chunk(command, output / ".partial")
    assert not (output / "index.json").exists()
    saved = len(list((output / ".partial").glob("part-*.safetensors")))
    assert saved >= 1
    assert main(command) == 0
    first = VideoIndex.load(output)
    assert len(first) == 60 and not (output / ".partial").exists()

    # The same index built in one go, in another directory: identical rows.
    assert main(index_command(source, tmp_path / "clean", checkpoint)) == 0
    clean = VideoIndex.load(tmp_path / "clean")
    assert first.entries == clean.entries
    assert torch.equal(first.embeddings, clean.embeddings)

    # An update killed half-way: the old index is still whole and loadable.
    write_videos(source, 60, first_length=31)
    kill_after_first_chunk(command, output / ".partial")
    still = VideoIndex.load(output)
    assert still.entries == first.entries and torch.equal(still.embeddings, first.embeddings)

    # Re-running finishes the update, reusing the saved chunks.
    resumed = VideoIndex.build(source, output, model=checkpoint, num_frames=3, batch_size=1, progress=False)
    assert resumed.build_report.resumed >= 2
    assert resumed.build_report.resumed + resumed.build_report.embedded == 60
    assert resumed.build_report.removed == 60
    fresh = VideoIndex.build(source, tmp_path / "fresh", model=checkpoint, num_frames=3, batch_size=1, progress=False)
    assert resumed.entries == fresh.entries and torch.equal(resumed.embeddings, fresh.embeddings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(processes: int, command: list[str]) -> subprocess.CompletedProcess:
    # `--cpu` makes accelerate start a single process; its torchrun launcher (`--multi_gpu`, refused for one process)
    # starts them all, and on a machine without CUDA they join a gloo group.
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", *(["--multi_gpu"] if processes > 1 else []),
        "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "-m", "peft_vop.cli.main",
    ]  # fmt: skip
    completed = subprocess.run(
        [*launcher, *command], env=environment(), capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


def test_two_gloo_processes_build_the_index_of_one(tmp_path, checkpoint):
    source = tmp_path / "videos"
    write_videos(source, 9, first_length=12)
    (source / "broken.mp4").write_bytes(b"not a video")
    windows = ["--window", "0.2", "--stride", "0.1"]
    single = accelerate_launch(1, index_command(source, tmp_path / "single", checkpoint, *windows))
    command = index_command(source, tmp_path / "pair", checkpoint, *windows)
    pair = accelerate_launch(2, [argument for argument in command if argument != "--no-progress"])

    one, two = VideoIndex.load(tmp_path / "single"), VideoIndex.load(tmp_path / "pair")
    assert len(one) > 9  # several windows per clip
    assert one.entries == two.entries
    assert torch.equal(one.embeddings, two.embeddings)
    # The main process embedded only its half (its progress bar counts its share); the other process the rest.
    share = (len(one) + 1) // 2
    assert f"{share}/{share} [" in pair.stderr, pair.stderr[-2000:]
    # Only the main process reports, once, with the unreadable file.
    for completed in (single, pair):
        assert completed.stdout.count("entries embedded") == 1
        assert "broken.mp4" in completed.stdout
