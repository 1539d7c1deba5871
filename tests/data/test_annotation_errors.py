"""Bad annotation files: every error names the file, the line and the field; nothing is dropped silently."""

from __future__ import annotations

import re

import pytest

from peft_vop.data import read_annotations


GOOD = '{"video": "a.mp4", "captions": ["a cat"], "split": "test"}\n'


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ('{"video": "b.mp4", "captions": ["  "], "split": "test"}', "line 2, `captions`: a caption is empty or only"),
        ('{"video": "b.mp4", "captions": [""], "split": "test"}', "line 2, `captions`: a caption is empty"),
        ('{"video": "b.mp4", "captions": [3], "split": "test"}', "line 2, `captions`: every caption must be a string"),
        ('{"video": "b.mp4", "captions": 7, "split": "test"}', "line 2: `captions` must be a list of strings; got 7"),
        ('{"video": 5, "captions": ["a dog"], "split": "test"}', "line 2: `video` must be a path .* got 5"),
        ('{"video": "b.mp4", "captions": ["a dog"], "id": null, "split": "test"}', "line 2: `id` must be .* None"),
        ('{"video": "b.mp4", "captions": ["a dog"], "id": [1], "split": "test"}', "line 2: `id` must be"),
        ('{"video": "b.mp4", "captions": ["a dog"]}', "line 2: this video has no `split`, so it cannot be selected"),
        ('{"video": "c.mp4", "captions": ["a dog"], "id": "a.mp4", "split": "test"}', "ids must be unique.*a.mp4"),
    ],
)
def test_jsonl_errors_name_file_line_and_field(tmp_path, second_line, message):
    path = tmp_path / "annotations.jsonl"
    path.write_text(GOOD + second_line + "\n")
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}.*{message}"):
        read_annotations(path, split="test")


def test_rows_without_a_split_are_kept_when_no_split_is_asked_for(tmp_path):
    path = tmp_path / "annotations.jsonl"
    path.write_text(GOOD + '{"video": "b.mp4", "captions": ["a dog"]}\n')
    assert [record.split for record in read_annotations(path)] == ["test", None]


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "annotations.jsonl"
    path.write_bytes(GOOD.encode() + '{"video": "b.mp4", "captions": ["caf\u00e9"]}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}, line 2: not UTF-8 text \\(byte 0xe9\\)"):
        read_annotations(path)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("a.mp4,a cat,test\nb.mp4, ,test\n", "line 3, `caption`: a caption is empty or only whitespace"),
        ("a.mp4,a cat,test\nb.mp4,a dog,\n", "line 3: this video has no `split`"),
        ("a.mp4,a cat,test\n,a dog,test\n", "line 3: `video` is empty"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, rows, message):
    path = tmp_path / "annotations.csv"
    path.write_text("video,caption,split\n" + rows)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}, {message}"):
        read_annotations(path, split="test")


def test_non_utf8_csv_names_the_line(tmp_path):
    path = tmp_path / "annotations.csv"
    path.write_bytes(b"video,caption,split\na.mp4,a cat,test\nb.mp4,caf\xe9,test\n")
    with pytest.raises(ValueError, match="line 3: not UTF-8 text"):
        read_annotations(path)


def test_empty_captions_in_a_hugging_face_dataset_name_the_row():
    from datasets import Dataset

    from peft_vop.data import HFVideoRecords

    records = HFVideoRecords(Dataset.from_dict({"video": ["a.mp4", "b.mp4"], "caption": ["a cat", "\t"]}))
    with pytest.raises(ValueError, match="Row 1 of the dataset.*empty or only whitespace"):
        records[1]
    with pytest.raises(ValueError, match="Row 1 of the dataset"):
        records.all_captions()
