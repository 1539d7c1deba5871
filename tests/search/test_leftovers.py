"""A build cleans up the temporary files that a killed build's writes left in the index directory."""

from __future__ import annotations

from pathlib import Path

from helpers.video_factory import write_video

from peft_vop.search import VideoIndex


def test_temporaries_of_a_dead_build_are_removed_and_the_build_proceeds(tmp_path: Path, checkpoint):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "a.mp4", 20)
    output = tmp_path / "index"
    output.mkdir()
    # What a build killed inside an atomic write leaves: a hidden temporary owned by a process that no longer runs.
    leftover = output / ".index.json.tmp-999999999-deadbeef"
    leftover.write_text("{")
    index = VideoIndex.build(folder, output, model=checkpoint, num_frames=2, progress=False)
    assert len(index) == 1
    assert not leftover.exists()
    assert VideoIndex.load(output).info["count"] == 1
