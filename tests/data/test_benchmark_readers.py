"""Each benchmark reader on small files written in that benchmark's own format."""

import json
import os
import pickle

import pytest

from peft_vop.data import BENCHMARKS, read_activitynet, read_benchmark, read_didemo, read_lsmdc, read_msrvtt, read_msvd


@pytest.fixture
def dirs(tmp_path):
    annotations, videos = tmp_path / "annotations", tmp_path / "videos"
    annotations.mkdir()
    (videos / "nested").mkdir(parents=True)
    return annotations, videos


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return str(path)


def test_msrvtt(dirs):
    annotations, videos = dirs
    data = {
        "videos": [{"video_id": f"video{i}", "split": "train"} for i in range(4)],
        "sentences": [
            {"video_id": "video0", "caption": "a man sings", "sen_id": 0},
            {"video_id": "video1", "caption": "a car drives", "sen_id": 1},
            {"video_id": "video0", "caption": "someone performs", "sen_id": 2},
            {"video_id": "video2", "caption": "a cat sleeps", "sen_id": 3},
        ],
    }
    (annotations / "MSRVTT_data.json").write_text(json.dumps(data))
    (annotations / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\nvideo1\nvideo2\n")
    (annotations / "MSRVTT_train.7k.csv").write_text("video_id\nvideo1\n")
    (annotations / "MSRVTT_JSFUSION_test.csv").write_text(
        'key,vid_key,video_id,sentence\nret0,msr3,video3,a girl dances\nret1,msr1,video1,"a red car, fast"\n'
    )
    video0 = touch(videos / "nested" / "video0.mp4")

    train = read_msrvtt(annotations, videos, "train_9k")
    assert [(r.id, r.captions, r.split) for r in train] == [
        ("video0", ("a man sings", "someone performs"), "train"),
        ("video1", ("a car drives",), "train"),
        ("video2", ("a cat sleeps",), "train"),
    ]
    assert train[0].video == video0  # found in a sub-directory
    assert train[1].video == os.path.join(videos, "video1.mp4")  # absent: its expected path
    assert [r.id for r in read_msrvtt(annotations, videos, "train_7k")] == ["video1"]
    test = read_msrvtt(annotations, videos, "test")
    assert [(r.id, r.captions, r.split) for r in test] == [
        ("video3", ("a girl dances",), "test"),
        ("video1", ("a red car, fast",), "test"),
    ]
    with pytest.raises(ValueError, match="train_9k"):
        read_msrvtt(annotations, videos, "train")


@pytest.mark.parametrize("caption_format", ["pickle", "json", "text"])
def test_msvd(dirs, caption_format):
    annotations, videos = dirs
    (annotations / "test_list.txt").write_text("abc_1_5\nxyz_3_9\n")
    (annotations / "train_list.txt").write_text("abc_1_5\n")
    if caption_format == "pickle":  # CLIP4Clip: tokenised captions
        raw = {"abc_1_5": [["a", "dog", "runs"], ["the", "dog", "plays"]], "xyz_3_9": [["a", "cat"]]}
        (annotations / "raw-captions.pkl").write_bytes(pickle.dumps(raw))
    elif caption_format == "json":  # X-Pool
        captions = {"abc_1_5": ["a dog runs", "the dog plays"], "xyz_3_9": ["a cat"]}
        (annotations / "captions_msvd.json").write_text(json.dumps(captions))
    else:  # the corpus' own file
        (annotations / "AllVideoDescriptions.txt").write_text(
            "# Microsoft Research Video Description Corpus\n# VideoID Description\n"
            "abc_1_5 a dog runs\nxyz_3_9 a cat\nabc_1_5 the dog plays\nother_1_2 unused\n"
        )
    clip = touch(videos / "abc_1_5.avi")
    records = read_msvd(annotations, videos, "test")
    assert [(r.id, r.captions) for r in records] == [
        ("abc_1_5", ("a dog runs", "the dog plays")),
        ("xyz_3_9", ("a cat",)),
    ]
    assert records[0].video == clip and records[1].video == os.path.join(videos, "xyz_3_9.avi")


def test_msvd_pickle_may_not_import_code(dirs):
    annotations, videos = dirs
    (annotations / "test_list.txt").write_text("a\n")
    (annotations / "raw-captions.pkl").write_bytes(pickle.dumps({"a": [[os.sep]], "f": os.path.join}))
    with pytest.raises(pickle.UnpicklingError, match="plain data"):
        read_msvd(annotations, videos, "test")


def test_didemo_joins_descriptions_into_a_paragraph(dirs):
    annotations, videos = dirs
    moments = [
        {"video": "111@N00_abc.mov", "description": "a girl walks in ", "times": [[0, 0]]},
        {"video": "222@N00_def.avi", "description": "a bird flies", "times": [[1, 2]]},
        {"video": "111@N00_abc.mov", "description": "she sits down", "times": [[2, 3]]},
        {"video": "333@N00_ghi.mp4", "description": "not in the list", "times": [[0, 1]]},
    ]
    (annotations / "test_data.json").write_text(json.dumps(moments))
    (annotations / "test_list.txt").write_text("111@N00_abc.mov\n222@N00_def.avi\n")
    reencoded = touch(videos / "111@N00_abc.mp4")  # re-encoded copy, found by stem
    records = read_didemo(annotations, videos, "test")
    assert [(r.id, r.captions) for r in records] == [
        ("111@N00_abc.mov", ("a girl walks in she sits down",)),
        ("222@N00_def.avi", ("a bird flies",)),
    ]
    assert records[0].video == reencoded and records[1].video == os.path.join(videos, "222@N00_def.avi")


def test_activitynet_paragraphs_on_val_1(dirs):
    annotations, videos = dirs
    val = {
        "v_QOlSCBRmfWY": {
            "duration": 82.7,
            "timestamps": [[0, 20], [20, 60]],
            "sentences": [" A man runs.", " He jumps. "],
        },
        "v_ehGHCYKzyZ8": {"duration": 61.7, "timestamps": [[0, 61]], "sentences": ["A dog barks."]},
    }
    (annotations / "val_1.json").write_text(json.dumps(val))
    (annotations / "val_ids.json").write_text(json.dumps(["v_QOlSCBRmfWY", "v_ehGHCYKzyZ8"]))
    by_key = touch(videos / "v_QOlSCBRmfWY.mp4")
    by_youtube_id = touch(videos / "ehGHCYKzyZ8.mkv")
    records = read_activitynet(annotations, videos, "val_1")
    assert [(r.id, r.captions, r.split) for r in records] == [
        ("v_QOlSCBRmfWY", ("A man runs. He jumps.",), "val"),
        ("v_ehGHCYKzyZ8", ("A dog barks.",), "val"),
    ]
    assert [r.video for r in records] == [by_key, by_youtube_id]
    assert read_benchmark("activitynet", annotations, videos) == records  # val_1 is the default


def test_lsmdc(dirs):
    annotations, videos = dirs
    lines = [
        "1001_Flight_00.00.45.153-00.00.50.427\t00.00.45.153\t00.00.50.427\t00.00.45.100\t00.00.50.500\tSOMEONE lands.",
        "1001_Flight_00.01.00.000-00.01.05.000\t00.01.00.000\t00.01.05.000\t00.01.00.000\t00.01.05.000\tHe smiles\tbroadly.",
    ]
    (annotations / "LSMDC16_challenge_1000_publictect.csv").write_text("\n".join(lines) + "\n")
    (annotations / "LSMDC16_annos_training.csv").write_text(
        lines[0] + "\n" + lines[0].replace("lands", "flies") + "\n"
    )
    clip = touch(videos / "1001_Flight" / "1001_Flight_00.00.45.153-00.00.50.427.avi")
    test = read_lsmdc(annotations, videos, "test")
    assert [(r.id, r.captions) for r in test] == [
        ("1001_Flight_00.00.45.153-00.00.50.427", ("SOMEONE lands.",)),
        ("1001_Flight_00.01.00.000-00.01.05.000", ("He smiles\tbroadly.",)),
    ]
    assert test[0].video == clip
    assert test[1].video == os.path.join(videos, "1001_Flight", "1001_Flight_00.01.00.000-00.01.05.000.avi")
    train = read_lsmdc(annotations, videos, "train")
    assert train[0].captions == ("SOMEONE lands.", "SOMEONE flies.")  # one clip, several sentences
    (annotations / "LSMDC16_annos_val.csv").write_text("only\tthree\tfields\n")
    with pytest.raises(ValueError, match="line 1: expected 6 tab-separated fields"):
        read_lsmdc(annotations, videos, "val")


def test_missing_files_and_unknown_names(dirs):
    annotations, videos = dirs
    with pytest.raises(FileNotFoundError, match="MSRVTT_JSFUSION_test.csv"):
        read_msrvtt(annotations, videos, "test")
    (annotations / "LSMDC16_challenge_1000_publictect.csv").write_text("")
    with pytest.raises(FileNotFoundError, match="Video directory not found"):
        read_benchmark("lsmdc", annotations, videos / "nope", "test")
    with pytest.raises(ValueError, match="Unknown benchmark 'kinetics'"):
        read_benchmark("kinetics", annotations, videos)
    (annotations / "test_list.txt").write_text("a\n")
    with pytest.raises(FileNotFoundError, match=r"raw-captions\.pkl .*captions_msvd\.json .*AllVideoDescriptions"):
        read_msvd(annotations, videos, "test")
    assert set(BENCHMARKS) == {"msrvtt", "msvd", "didemo", "activitynet", "lsmdc"}
