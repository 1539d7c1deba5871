import json
import os

import pytest
from datasets import Dataset, Video

from peft_vop.data import HFVideoRecords, VideoRecord, read_annotations, write_annotations


def write_jsonl(path, entries):
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    return path


def test_jsonl_reader_resolves_paths_and_filters_splits(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write_jsonl(
        tmp_path / "sub" / "annotations.jsonl",
        [
            {"video": "clips/a.mp4", "captions": ["a cat", "a kitten"], "split": "train", "id": "a"},
            {"video": "/abs/b.mp4", "captions": ["a dog"], "split": "test"},
            {"video": "c.mp4", "captions": ["a cow"], "split": "test"},
        ],
    )
    records = read_annotations(path)
    assert [record.id for record in records] == ["a", "/abs/b.mp4", "c.mp4"]
    assert records[0] == VideoRecord(
        os.path.join(tmp_path, "sub", "clips", "a.mp4"), ("a cat", "a kitten"), "a", "train"
    )
    assert records[1].video == "/abs/b.mp4"
    assert [record.id for record in read_annotations(path, split="test")] == ["/abs/b.mp4", "c.mp4"]


def test_csv_reader_groups_captions_by_video(tmp_path):
    path = tmp_path / "annotations.csv"
    path.write_text(
        "video,caption,split,id\n"
        "a.mp4,a cat,test,a\n"
        'b.mp4,"a dog, running",test,b\n'
        "a.mp4,a kitten,test,a\n"
        "c.mp4,a cow,train,\n"
    )
    records = read_annotations(path)
    assert [(record.id, record.captions, record.split) for record in records] == [
        ("a", ("a cat", "a kitten"), "test"),
        ("b", ("a dog, running",), "test"),
        ("c.mp4", ("a cow",), "train"),
    ]
    assert records[0].video == os.path.join(tmp_path, "a.mp4")


def test_round_trip_through_write_annotations(tmp_path):
    records = [VideoRecord(str(tmp_path / "v" / "a.mp4"), ("x", "y"), "a", "val")]
    write_annotations(records, tmp_path / "out.jsonl")
    assert read_annotations(tmp_path / "out.jsonl") == records


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"video": "a.mp4"}\n', "must be an object with `video` and `captions`"),
        ('{"video": "a.mp4", "captions": "one"}\n', "list of strings"),
        ('{"video": "a.mp4", "captions": ["x"], "split": "dev"}\n', "`split` must be one of"),
        ("not json\n", "line 1: not valid JSON"),
        ('{"video": "a.mp4", "captions": ["x"]}\n{"video": "a.mp4", "captions": ["y"]}\n', "unique"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, content, message):
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_annotations(tmp_path / "bad.jsonl")


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_annotations(tmp_path / "missing.jsonl")
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(ValueError, match=r"\.jsonl .* or \.csv"):
        read_annotations(tmp_path / "a.txt")
    (tmp_path / "a.csv").write_text("video,text\nx,y\n")
    with pytest.raises(ValueError, match=r"missing \['caption', 'split'\]"):
        read_annotations(tmp_path / "a.csv")


def test_fingerprint_tracks_file_changes(tmp_path):
    path = tmp_path / "a.mp4"
    path.write_bytes(b"1234")
    record = VideoRecord(str(path), ("x",), "a")
    before = record.fingerprint()
    path.write_bytes(b"12345")
    assert record.fingerprint() != before
    assert VideoRecord(b"abc", ("x",), "b").fingerprint() == VideoRecord(b"abc", ("y",), "c").fingerprint()
    assert VideoRecord(b"abc", ("x",), "b").fingerprint() != VideoRecord(b"abd", ("x",), "b").fingerprint()


def test_hf_records_with_paths_lists_and_several_caption_columns(tmp_path):
    table = Dataset.from_dict(
        {
            "path": ["a.mp4", "/abs/b.mp4"],
            "captions": [["a cat", "a kitten"], ["a dog"]],
            "title": ["cat video", "dog video"],
            "key": [7, 8],
        }
    )
    records = HFVideoRecords(table, "path", ["captions", "title"], id_column="key", video_dir=str(tmp_path))
    assert len(records) == 2
    assert records[0] == VideoRecord(os.path.join(tmp_path, "a.mp4"), ("a cat", "a kitten", "cat video"), "7")
    assert records[1].video == "/abs/b.mp4"
    assert records.all_captions() == [("a cat", "a kitten", "cat video"), ("a dog", "dog video")]
    assert [record.id for record in records[0:2]] == ["7", "8"]


def test_hf_records_with_bytes_and_video_feature(tmp_path):
    raw = Dataset.from_dict({"video": [b"\x00\x01", b"\x02"], "caption": ["x", "y"]})
    records = HFVideoRecords(raw)
    assert records[1].video == b"\x02" and records[1].id == "1"
    assert "bytes" in records[1].name
    feature = Dataset.from_dict({"video": [str(tmp_path / "a.mp4")], "caption": ["x"]}).cast_column("video", Video())
    assert HFVideoRecords(feature)[0].video == str(tmp_path / "a.mp4")  # not decoded by `datasets`


def test_hf_records_check_columns():
    table = Dataset.from_dict({"video": ["a.mp4"], "text": ["x"]})
    with pytest.raises(ValueError, match=r"`caption_column`='caption' is not a column .* \['video', 'text'\]"):
        HFVideoRecords(table)
