"""`VideoIndex.build` / `vop index`: the same embeddings as `vop eval`, windows, incremental updates, errors."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers.video_factory import frame_index, write_video
from torch.utils.data import DataLoader

from peft_vop.cli.main import main
from peft_vop.data import VideoTextCollator, VideoTextDataset
from peft_vop.retrieval import encode_videos
from peft_vop.search import IndexDataset, VideoIndex, collect_videos, load_model, window_bounds


def test_folder_sources_are_collected_recursively_and_sorted(video_folder):
    records = collect_videos(video_folder)
    assert [record.id for record in records] == [
        "bikes.mp4",
        "carphone_distorted.mp4",
        os.path.join("generated", "a.mp4"),
        os.path.join("generated", "b.mp4"),
    ]
    assert all(os.path.isabs(record.video) for record in records)


@pytest.mark.parametrize("with_adapter", [False, True])
def test_embeddings_are_those_of_vop_eval(video_folder, tmp_path, checkpoint, adapter, with_adapter):
    adapter = adapter if with_adapter else None
    index = VideoIndex.build(
        video_folder, tmp_path / "index", model=checkpoint, adapter=adapter, num_frames=3, batch_size=2, progress=False
    )
    # What `vop eval` runs (cli/evaluate.py -> evaluate_retrieval): its dataset, collator, loader and encoder.
    loaded = load_model(checkpoint, adapter, num_frames=3, device="cpu")
    dataset = VideoTextDataset(collect_videos(video_folder), loaded.preprocessor, num_frames=3)
    loader = DataLoader(dataset, batch_size=2, collate_fn=VideoTextCollator(loaded.preprocessor))
    expected = encode_videos(loaded.model, loader, progress=False)

    assert [entry.id for entry in index.entries] == [record.id for record in dataset.records]
    assert torch.equal(index.embeddings, expected.embeddings)
    assert index.fingerprint["frames"]["num_frames"] == 3
    assert (index.fingerprint["adapter"] is None) == (adapter is None)


def test_windows_sample_their_frames_inside_the_window(tmp_path, checkpoint):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "long.mp4", 300, fps=30)  # 10 s; frame i is shown at i / 30 s
    index = VideoIndex.build(
        folder, tmp_path / "index", model=checkpoint, num_frames=4, window=4, stride=3, progress=False
    )
    assert [(entry.start, entry.end) for entry in index.entries] == window_bounds(10.0, 4, 3)
    assert [(entry.start, entry.end) for entry in index.entries] == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    assert {entry.duration for entry in index.entries} == {10.0}
    loaded = load_model(checkpoint, num_frames=4, device="cpu")
    dataset = IndexDataset(index.entries, loaded.preprocessor, 4)
    for position, entry in enumerate(index.entries):
        frames, indices, _ = dataset.decode(position)
        shown = [frame_index(frame.numpy()) for frame in frames]
        assert shown == indices
        assert all(entry.start <= index_ / 30 < entry.end for index_ in indices), (entry, indices)
        # The uniform rule of `vop eval` (the lower middle frame of each of 4 segments of 30) on the 120 frames.
        first = round(entry.start * 30)
        assert indices == [first + 14, first + 44, first + 74, first + 104]


def test_real_videos_are_windowed_embedded_and_searchable(video_folder, tmp_path, checkpoint):
    index = VideoIndex.build(
        video_folder, tmp_path / "index", model=checkpoint, num_frames=3, window=4, stride=3, progress=False
    )
    bikes = [entry for entry in index.entries if entry.id == "bikes.mp4"]
    assert [(entry.start, entry.end) for entry in bikes] == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    carphone = [entry for entry in index.entries if entry.id == "carphone_distorted.mp4"]
    assert [(entry.start, entry.end) for entry in carphone] == [(0.0, 4.004)]
    assert torch.allclose(index.embeddings.norm(dim=1), torch.ones(len(index)), atol=1e-5)
    for row in range(len(index)):  # every entry is its own nearest neighbour
        hit = index.search(embedding=index.embeddings[row], k=1)[0]
        assert torch.equal(index.embeddings[index.entries.index(hit.entry)], index.embeddings[row])
        assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_an_unchanged_source_is_not_embedded_again(video_folder, tmp_path, checkpoint):
    first = VideoIndex.build(video_folder, tmp_path / "index", model=checkpoint, num_frames=3, progress=False)
    again = VideoIndex.build(video_folder, tmp_path / "index", model=checkpoint, num_frames=3, progress=False)
    assert (again.build_report.embedded, again.build_report.reused, again.build_report.removed) == (0, 4, 0)
    assert again.info["generation"] == first.info["generation"] == 1  # nothing was rewritten
    assert torch.equal(again.embeddings, first.embeddings)


def test_touched_deleted_added_and_unreadable_videos(video_folder, tmp_path, checkpoint, capsys):
    output = tmp_path / "index"
    # The shipped CLIP by name, and the command line's canonical option names.
    arguments = ["index", str(video_folder), "--model_name_or_path", "default", "--output_dir", str(output)]
    arguments += ["--num_frames", "3"]
    assert main([*arguments, "--disable_tqdm"]) == 0
    first = VideoIndex.load(output)
    capsys.readouterr()

    # Touch one real video (same bytes, new mtime), replace one generated video, delete one, add a broken one.
    bikes = video_folder / "bikes.mp4"
    os.utime(bikes, ns=(bikes.stat().st_atime_ns, bikes.stat().st_mtime_ns + 10**9))
    write_video(video_folder / "generated" / "a.mp4", 55)
    os.remove(video_folder / "generated" / "b.mp4")
    (video_folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    assert main([*arguments, "--disable_tqdm"]) == 0
    output_text = capsys.readouterr().out
    second = VideoIndex.load(output)

    assert [entry.id for entry in second.entries] == ["bikes.mp4", "carphone_distorted.mp4", "generated/a.mp4"]
    report = "2 entries embedded, 1 unchanged, 0 resumed from an interrupted build, 3 removed"
    assert report in output_text
    assert "1 videos could not be read and were skipped:" in output_text and "broken.mp4" in output_text
    # The untouched video keeps its row bit for bit; the touched one is re-embedded to the same value.
    assert torch.equal(second.embeddings[1], first.embeddings[1])
    assert torch.equal(second.embeddings[0], first.embeddings[0])
    assert not torch.equal(second.embeddings[2], first.embeddings[2])
    assert second.entries[0].mtime_ns == bikes.stat().st_mtime_ns
    # The previous generation's files are gone; index.json names the current ones.
    assert sorted(os.listdir(output)) == ["embeddings-000002.safetensors", "index.json", "metadata-000002.jsonl"]
    rows = [json.loads(line) for line in (output / "metadata-000002.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"id", "path", "start", "end", "duration", "size", "mtime_ns"}


def test_an_index_with_other_settings_is_not_overwritten_silently(video_folder, tmp_path, checkpoint, capsys):
    output = tmp_path / "index"
    VideoIndex.build(video_folder, output, model=checkpoint, num_frames=3, progress=False)
    arguments = ["index", str(video_folder), "--model", checkpoint, "--output", str(output), "--no-progress"]
    assert main([*arguments, "--num-frames", "4"]) == 2
    error = capsys.readouterr().err
    assert (
        "holds an index built with other settings" in error
        and "'num_frames': 3" in error
        and "--overwrite_output_dir" in error
    )
    assert main([*arguments, "--num-frames", "4", "--overwrite"]) == 0
    assert VideoIndex.load(output).fingerprint["frames"]["num_frames"] == 4


@pytest.mark.parametrize(
    ("keyword", "value", "message"),
    [
        ("window", -1.0, "`window` and `stride` must be positive seconds; got window=-1.0"),
        ("stride", 2.0, "`stride` (2.0) needs `window`"),
        ("batch_size", 0, "`batch_size` must be at least 1; got 0"),
    ],
)
def test_bad_arguments_are_refused(video_folder, tmp_path, checkpoint, keyword, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        VideoIndex.build(video_folder, tmp_path / "index", model=checkpoint, progress=False, **{keyword: value})


def test_a_missing_source_is_refused(tmp_path, checkpoint):
    with pytest.raises(ValueError, match="`source` must be a folder of videos or an annotation file"):
        VideoIndex.build(tmp_path / "nowhere", tmp_path / "index", model=checkpoint, progress=False)


def test_an_annotation_file_split_is_a_source(video_folder, tmp_path, checkpoint):
    from peft_vop.data import VideoRecord, write_annotations

    records = [
        VideoRecord(str(video_folder / "bikes.mp4"), ("bikes",), "bikes", "test"),
        VideoRecord(str(video_folder / "generated" / "a.mp4"), ("colours",), "a", "train"),
        VideoRecord(str(video_folder / "carphone_distorted.mp4"), ("a phone call",), "call", "test"),
    ]
    write_annotations(records, tmp_path / "annotations.jsonl")
    index = VideoIndex.build(
        tmp_path / "annotations.jsonl", tmp_path / "index", model=checkpoint, split="test", progress=False
    )
    assert [entry.id for entry in index.entries] == ["bikes", "call"]
    assert [entry.duration for entry in index.entries] == [10.0, 4.004]


def test_a_folder_that_is_not_an_index_is_not_written_into(video_folder, tmp_path, checkpoint):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="exists and is not a video index"):
        VideoIndex.build(video_folder, tmp_path / "taken", model=checkpoint, progress=False)
    assert os.listdir(tmp_path / "taken") == ["thesis.tex"]


def test_the_progress_bar_counts_videos_with_time_left(video_folder, tmp_path, checkpoint, capsys):
    VideoIndex.build(video_folder, tmp_path / "index", model=checkpoint, num_frames=3, batch_size=2)
    bar = capsys.readouterr().err
    assert "Indexing videos: 100%" in bar and "4/4 [" in bar and "<00:00" in bar  # elapsed<remaining
